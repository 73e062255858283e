"""PreMix's parts (models.deep.premix_parts) and PreMix-H's equalisation branch.

The registry-driven checks (tests/test_deep_models.py, tests/test_deep_inference.py)
cover shapes, gradients, the halo and tiled-equals-whole through the engine (with the
scene's histograms); here: predictive filtering is eq. 20, EWFM's exchange is eq. 4-5,
the hard mask is eq. 16, and the equalisation tables equalise.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.deep.method import bin_counts
from models.deep.premix import PreMixH
from models.deep.premix_parts import (
    EWFM,
    MASKS,
    apply_tables,
    cumulative_tables,
    hard_mix,
    high_pass,
    predictive_filter,
)
from models.registry import get_entry
from tests.floats import EPS64, assert_rounding_close

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(("k", "bands_in"), [(3, 4), (5, 4), (3, 1)])
def test_predictive_filter_is_eq_20(k, bands_in):
    """out[i] = sum_j K[j - i] x[j]: the shift-and-sum equals the unfolded neighbourhoods
    (reflect-padded) times the per-pixel kernels; a one-band input is broadcast."""
    g = torch.Generator().manual_seed(4)
    n, b, h, w = 2, 4, 11, 13
    x = torch.rand(n, bands_in, h, w, generator=g, dtype=torch.float64)
    kern = torch.randn(n, b * k * k, h, w, generator=g, dtype=torch.float64)
    got = predictive_filter(x, kern, k)
    r = k // 2
    cols = F.unfold(F.pad(x, (r, r, r, r), mode="reflect"), k).view(n, bands_in, k * k, h, w)
    ref = (kern.view(n, b, k * k, h, w) * cols).sum(2)
    assert got.shape == (n, b, h, w)
    assert_rounding_close(got, ref, k * k, eps=EPS64)


def test_masks_map_into_the_unit_interval_and_hard_mixing_is_a_step():
    x = torch.linspace(-10, 10, 201)
    for name, sigma in MASKS.items():
        m = sigma(x)
        assert (m >= 0).all() and (m <= 1).all(), name
    beta = torch.tensor(0.5)
    h = hard_mix(torch.tensor([0.0, 0.4, 0.5, 0.6, 1.0]), beta, 20.0)
    assert h[2] == 0.5 and h[0] < 0.0001 and h[4] > 0.9999 and h[1] < 0.5 < h[3]


def test_ewfm_exchange_conserves_the_sum_of_the_flows():
    """Eq. 4-5 move the fraction M of each element from one flow to the other, so
    H_Y' + H_P' = H_Y + H_P (after each flow's ResBlock), whatever M is."""
    layer = EWFM(8, "tanh-relu6", hard=True, gain=20.0).double()
    g = torch.Generator().manual_seed(1)
    h_y = torch.randn(1, 8, 9, 10, generator=g, dtype=torch.float64)
    h_p = torch.randn(1, 8, 9, 10, generator=g, dtype=torch.float64)
    out_y, out_p = layer(h_y, h_p)
    before = layer.res_y(h_y) + layer.res_p(h_p)
    assert_rounding_close(out_y + out_p, before, 8, eps=EPS64)
    assert (out_y - layer.res_y(h_y)).abs().max() > 1e-3  # something was exchanged


def test_high_pass_removes_constants():
    x = torch.full((1, 2, 7, 9), 0.3, dtype=torch.float64)
    assert high_pass(x).abs().max() < 1e-15


def test_equalisation_tables_flatten_the_histogram():
    rng = np.random.default_rng(0)
    v = rng.beta(2, 5, size=(1, 1, 200, 200))  # skewed towards dark values
    counts = torch.as_tensor(bin_counts(v, 256))[None]
    tables = cumulative_tables(counts)
    assert tables.shape == (1, 257) and tables[0, 0] == 0 and tables[0, -1] == 1
    assert (tables.diff() >= 0).all()
    eq = apply_tables(torch.as_tensor(v), tables).numpy()
    flat, _ = np.histogram(eq, bins=10, range=(0, 1))
    assert flat.min() > 0.85 * flat.mean() and flat.max() < 1.15 * flat.mean()
    empty = cumulative_tables(torch.zeros(1, 16))  # no values: identity
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64)
    assert_rounding_close(apply_tables(x, empty), x, 4, eps=EPS64)


def test_premix_h_reads_its_equalisation_and_checks_the_shapes():
    net = PreMixH(3).eval()
    ms, pan = torch.rand(1, 3, 24, 28), torch.rand(1, 1, 24, 28)
    with torch.inference_mode():
        before = net(ms, pan)
    rng = np.random.default_rng(1)
    net.set_equalisation(rng.integers(0, 50, (3, 256)), rng.integers(0, 50, 256))
    with torch.inference_mode():
        after = net(ms, pan)
    assert (after - before).abs().max() > 1e-6  # the HE branch steers the kernels
    assert "he_ms" in net.state_dict()  # the training set's tables travel in the card
    with pytest.raises(ValueError, match="histograms must be"):
        net.set_equalisation(np.ones((3, 128)), np.ones(128))


@pytest.mark.parametrize("name", ["premix-b", "premix-h"])
def test_parameter_counts_are_near_table_3(name):
    """Table 3 of the paper: PreMix-B 0.151 M, PreMix-H 0.865 M parameters; ours differ
    by the unstated details (kernel predictor depth, the carried features)."""
    info = get_entry(name).info
    paper = info.extra["paper_params"]
    assert abs(info.params - paper) / paper < 0.15


def test_per_sample_tables_equalise_each_sample_by_its_own_scene():
    """Training equalises each window by its own scene's statistics: a batch with
    per-sample tables gives, sample by sample, what that sample gives alone under its
    scene's tables; the scene tables (saved with the weights) stay as they were."""
    torch.manual_seed(0)
    net = PreMixH(3, channels=8).eval()
    rng = np.random.default_rng(2)
    ms_c = [rng.integers(0, 50, (3, 256)) for _ in range(2)]
    pan_c = [rng.integers(0, 50, 256) for _ in range(2)]
    ms, pan = torch.rand(2, 3, 24, 28), torch.rand(2, 1, 24, 28)
    alone = []
    for k in range(2):
        net.set_equalisation(ms_c[k], pan_c[k])
        with torch.inference_mode():
            alone.append(net(ms[k : k + 1], pan[k : k + 1]))
    scene_tables = net.he_ms.clone()
    net.set_equalisation(np.stack(ms_c), np.stack(pan_c))
    with torch.inference_mode():
        both = net(ms, pan)
    assert_rounding_close(both, torch.cat(alone), 64)
    assert torch.equal(net.he_ms, scene_tables)
    assert set(net.state_dict()) == {k for k, _ in PreMixH(3, channels=8).state_dict().items()}
    with pytest.raises(ValueError, match="2 sets of tables for a batch of 1"):
        net(ms[:1], pan[:1])
    net.set_equalisation(ms_c[0], pan_c[0])  # scene counts drop the per-sample tables
    assert net.sample_tables is None


def test_per_sample_lookup_equals_one_lookup_per_sample():
    rng = np.random.default_rng(3)
    tables = cumulative_tables(torch.as_tensor(rng.integers(0, 9, (3, 2, 16))))
    x = torch.rand(3, 2, 5, 6, dtype=torch.float64)
    got = apply_tables(x, tables)
    for n in range(3):
        assert torch.equal(got[n : n + 1], apply_tables(x[n : n + 1], tables[n]))
