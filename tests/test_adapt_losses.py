"""The reference-free losses of test-time adaptation (models.deep.adapt_losses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.deep.adapt_losses import (
    local_correlation,
    spectral_loss,
    structural_loss,
    structural_weight,
)
from physics.torch_ops import decimate_at, interp23, mtf_filter
from tests.floats import EPS64

pytestmark = pytest.mark.usefixtures("one_torch_thread")
GAINS = [0.3, 0.3, 0.3, 0.25]


def _scene(seed: int = 0, n: int = 64, ratio: int = 4):
    """A smooth high-resolution truth, its PAN and its MS (MTF + decimation, the
    physics the spectral loss inverts), float64."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(1, 1, n + 8, n + 8, generator=g), 9, 1)
    bands = torch.cat([base * (0.6 + 0.1 * b) + 0.05 * torch.rand(1, 1, n, n, generator=g)
                       for b in range(4)], 1).double()  # fmt: skip
    pan = bands.mean(1, keepdim=True)
    rows = cols = np.arange(ratio // 2, n, ratio)
    ms = decimate_at(mtf_filter(bands, GAINS, ratio), rows, cols)
    return bands, pan, ms, rows, cols


def test_spectral_loss_is_zero_on_the_truth_and_grows_with_a_bias():
    truth, _, ms, rows, cols = _scene()
    assert spectral_loss(truth, ms, GAINS, 4, rows, cols) <= 16 * EPS64
    # a bias passes the MTF whole but for the taps cut off at 41 x 41 (<= 0.3 % of it)
    biased = spectral_loss(truth + 0.01, ms, GAINS, 4, rows, cols)
    assert abs(float(biased) - 0.01) < 0.01 * 3e-3
    valid = torch.ones_like(ms, dtype=torch.bool)
    valid[..., :2, :] = False
    broken = ms.clone()
    broken[..., :2, :] = 1.0  # nodata samples, masked out
    assert spectral_loss(truth, broken, GAINS, 4, rows, cols, valid) <= 16 * EPS64
    assert spectral_loss(truth, broken, GAINS, 4, rows, cols) > 0.05


def test_local_correlation_of_a_linear_copy_is_one():
    x = torch.rand(2, 3, 20, 24, dtype=torch.float64)
    rho = local_correlation(2.0 * x + 1.0, x, 2)
    assert rho.shape == (2, 3, 16, 20)
    assert torch.allclose(rho, torch.ones_like(rho), atol=1e-6)
    assert torch.allclose(local_correlation(-x, x, 2), -torch.ones_like(rho), atol=1e-6)


def test_structural_loss_prefers_pan_detail_over_the_blurred_ms():
    truth, pan, ms, _, _ = _scene(1)
    ms_up = interp23(ms, 4)
    sharp = structural_loss(truth, pan, ms_up, GAINS, 4)
    blurred = structural_loss(ms_up, pan, ms_up, GAINS, 4)
    assert float(sharp) < float(blurred)
    truth.requires_grad_(True)
    structural_loss(truth, pan, ms_up, GAINS, 4).backward()
    assert truth.grad is not None and torch.isfinite(truth.grad).all()


def test_structural_weights_per_sensor_family():
    assert structural_weight("worldview2") == 0.36 and structural_weight("geoeye1") == 0.25
    assert structural_weight("generic") == 0.3
