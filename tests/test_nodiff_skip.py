"""NODiff's noise skip (models/deep/nodiff.py): eps_hat = Conv1x1(F^m) + sqrt(1 - a_t) x_t,
so a network whose head gives zeros predicts the noise of a zero residual; files made
without it (noise_skip=false) keep their function."""

from __future__ import annotations

import torch

from models.deep.nodiff import NODiff
from models.iterative.schedules import make_schedule


def _net(**kw) -> NODiff:
    torch.manual_seed(0)
    net = NODiff(n_bands=3, width=8, layers=2, modes=4, stage=1, window=16, window_ramp=4, **kw)
    with torch.no_grad():
        net.project.weight.zero_()
        net.project.bias.zero_()
    return net.eval()


def test_zero_head_predicts_the_noise_of_a_zero_residual():
    net = _net()
    abar = make_schedule("cosine", 1000).alphas_cumprod
    x_t, cond = torch.randn(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    t = torch.tensor([10, 899])
    with torch.no_grad():
        out = net.denoise(x_t, t, cond, None)
    for i, step in enumerate(t.tolist()):
        assert torch.allclose(out[i], (1 - abar[step]) ** 0.5 * x_t[i], atol=1e-6)
    assert not net.skip_gain.requires_grad
    assert "skip_gain" not in net.state_dict()  # a function of the schedule, not a weight


def test_without_the_skip_the_head_alone_answers():
    net = _net(noise_skip=False)
    with torch.no_grad():
        out = net.denoise(
            torch.randn(2, 3, 16, 16), torch.tensor([5, 500]), torch.rand(2, 3, 16, 16), None
        )
    assert torch.equal(out, torch.zeros_like(out))
    assert net.config["noise_skip"] is False and _net().config["noise_skip"] is True
