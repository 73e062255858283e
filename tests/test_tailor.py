"""Every deep model's split point and the Feature Tailor (models.deep.tailor), driven by
the registry: the tailored network starts as the network, the tailors alone learn with
the network frozen, and removing them gives the network back."""

from __future__ import annotations

import pytest
import torch

from models.deep.tailor import insert_tailors, split_modules
from models.registry import create_model, model_names

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DEEP = model_names("deep")


def _net(name: str) -> torch.nn.Module:
    kw = {"ratio": 4, "gains": [0.3] * 4, "band_weights": [0.25] * 4} if name == "otpnet" else {}
    small = {"channels": 8} if name not in ("pnn", "dicnn") else {}
    return create_model(name, n_bands=4, **kw, **small).eval()


@pytest.mark.parametrize("name", DEEP)
def test_tailors_start_as_identity_and_learn_alone(name):
    net = _net(name)
    for p in net.parameters():  # the network starts where training left it: not zero
        torch.nn.init.normal_(p, std=0.05) if p.dim() > 1 else None
    ms, pan = torch.rand(2, 4, 32, 32), torch.rand(2, 1, 32, 32)
    assert len(split_modules(net)) in (1, 2)
    with torch.no_grad():
        ref = net(ms, pan)
    with insert_tailors(net) as tailors:
        with torch.no_grad():
            same = net(ms, pan)
        assert torch.equal(same, ref)  # B = 0: exactly the network
        for p in net.parameters():
            p.requires_grad_(False)
        params = list(tailors.parameters())
        opt = torch.optim.Adam(params, lr=1e-2)
        for _ in range(3):
            loss = (net(ms, pan) - ms).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert all(p.grad is not None for p in params)
        with torch.no_grad():
            moved = net(ms, pan)
        assert (moved - ref).abs().max() > 0  # the tailors changed the output
    with torch.no_grad():
        assert torch.equal(net(ms, pan), ref)  # hooks gone: the network itself again
