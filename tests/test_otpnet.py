"""OTPNet's physics operators and its low-resolution input (models.deep.otpnet).

The registry-driven checks (tests/test_deep_models.py) cover shapes, gradients, the
halo and tiling; here: D^T is D's exact adjoint, D samples the MTF-blurred image on the
MS lattice, S is the band-weighted pseudo-PAN, and ``lr`` is the data term's target.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.deep.otpnet import OTPNet, truncated_mtf
from physics.mtf import MTF_HALF, mtf_kernel
from tests.floats import EPS64, assert_rounding_close

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("ratio", [2, 3, 4])
def test_truncated_mtf_keeps_almost_all_of_the_kernel(ratio):
    taps = truncated_mtf([0.2, 0.3, 0.45], ratio)
    assert taps.shape == (3, 1, 4 * ratio + 1, 4 * ratio + 1)
    np.testing.assert_allclose(taps.sum(axis=(1, 2, 3)), 1.0, rtol=0, atol=1e-12)
    for g in (0.15, 0.2, 0.3, 0.45, 0.5):  # the cut keeps >= 99.7 % of the kernel's sum
        full = mtf_kernel(g, ratio)
        h, c = 2 * ratio, MTF_HALF
        kept = full[c - h : c + h + 1, c - h : c + h + 1].sum() / full.sum()
        assert kept > 0.997, (g, ratio, kept)


@pytest.mark.parametrize(("ratio", "shape"), [(4, (37, 41)), (2, (30, 23)), (3, (27, 28))])
def test_degrade_adjoint_is_exact(ratio, shape):
    """<D x, e> == <x, D^T e> for random x, e (float64 rounding only)."""
    net = OTPNet(3, ratio=ratio, gains=[0.25, 0.3, 0.35]).double()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, *shape, generator=g, dtype=torch.float64)
    dx = net.degrade(x)
    e = torch.rand(dx.shape, generator=g, dtype=torch.float64)
    lhs = (dx * e).sum()
    rhs = (x * net.degrade_adjoint(e, shape)).sum()
    assert_rounding_close(lhs, rhs, x.numel() * (4 * ratio + 1) ** 2, eps=EPS64)
    assert dx.shape[-2:] == (-(-shape[0] // ratio), -(-shape[1] // ratio))


def test_degrade_is_the_blur_sampled_on_the_lattice():
    """A unit impulse at a lattice pixel comes back as the kernel's centre tap there and
    the taps ratio apart around it."""
    r = 4
    net = OTPNet(1, ratio=r, gains=[0.3]).double()
    x = torch.zeros(1, 1, 40, 40, dtype=torch.float64)
    x[0, 0, 20, 20] = 1.0
    d = net.degrade(x)[0, 0]
    k = net.blur[0, 0].double()
    c = 2 * r
    assert d[5, 5] == k[c, c]
    assert d[5, 6] == k[c, c - r] and d[4, 5] == k[c + r, c]
    assert d[5, 7] == k[c, c - 2 * r] and d[5, 8] == 0


def test_pseudo_pan_uses_the_band_weights():
    net = OTPNet(3, band_weights=[0.5, 0.3, 0.2]).double()
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    w = net.spectral.flatten()  # float32 0.5, 0.3, 0.2 (the buffer's own rounding)
    torch.testing.assert_close(w, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
    expect = w[0] * x[:, 0] + w[1] * x[:, 1] + w[2] * x[:, 2]
    assert_rounding_close(net.pseudo_pan(x)[:, 0], expect, 3, eps=EPS64)


def test_lowres_input_is_used_and_defaults_to_the_lattice_samples():
    net = OTPNet(4).eval()
    ms, pan = torch.rand(1, 4, 32, 36), torch.rand(1, 1, 32, 36)
    with torch.inference_mode():
        default = net(ms, pan)
        same = net(ms, pan, ms[..., ::4, ::4].clone())
        other = net(ms, pan, torch.rand(1, 4, 8, 9))
    torch.testing.assert_close(default, same, rtol=0, atol=0)
    assert (other - default).abs().max() > 1e-4  # the data term really reads lr
    with pytest.raises(ValueError, match=r"lr must be \(1, 4, 8, 9\)"):
        net(ms, pan, torch.rand(1, 4, 8, 8))


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="gains"):
        OTPNet(4, gains=[0.3, 0.3])
    with pytest.raises(ValueError, match="ratio >= 2"):
        OTPNet(4, ratio=1)


def test_config_rebuilds_the_same_network():
    """The card stores ``config``: ratio, gains and weights rebuild the same operators."""
    net = OTPNet(4, ratio=2, gains=[0.2, 0.25, 0.3, 0.35], band_weights=[0.1, 0.2, 0.3, 0.4])
    again = OTPNet(**net.config)
    torch.testing.assert_close(again.blur, net.blur, rtol=0, atol=0)
    torch.testing.assert_close(again.spectral, net.spectral, rtol=0, atol=0)
    assert "blur" not in net.state_dict()  # derived from the card, not stored
