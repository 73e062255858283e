"""The torch physics operators equal their numpy twins, batch, and carry gradients.

Tolerances follow from rounding (tests/floats.py): a value that sums ``n`` weighted
terms may differ between two evaluation orders by about ``n * eps * max|x|``. For the
41x41 MTF filter ``n`` is 1681 taps (numpy runs it by FFT on large arrays, torch
directly); for the separable 23-tap EXP it is the two passes' 24 taps each.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.base import FuseContext, Tile
from models.classical.common import glp_lowpass as np_glp_lowpass
from physics import degrade as np_degrade
from physics import resample as np_resample
from physics import torch_ops as T
from physics.kernels import axis_matrix
from physics.mtf import MTF_SIZE, mtf_filter_bands
from tests.floats import EPS64, assert_rounding_close
from tests.probe import run_python
from tiling.reader import sample_grid

MTF_TERMS = MTF_SIZE * MTF_SIZE
EXP_TERMS = 2 * 24  # two separable passes of a 24-wide tap window

# (N, B, H, W), ratio, gains: odd sizes, sizes that are not multiples of the ratio,
# arrays smaller than the kernel (numpy's direct path) and larger (its FFT path).
CASES = [
    ((2, 3, 37, 45), 4, (0.3, 0.15, 0.34)),
    ((1, 4, 23, 19), 2, (0.11, 0.29, 0.36, 0.28, 0.5)),  # more gains than bands
    ((3, 2, 53, 50), 4, (0.23, 0.41)),
    ((2, 1, 9, 13), 2, (0.15,)),
]
IDS = [f"{'x'.join(map(str, s))}-r{r}" for s, r, _ in CASES]


def _image(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """DN-like values (hundreds to a couple of thousand) with fine structure."""
    rng = np.random.default_rng(seed)
    return 200.0 + 1800.0 * rng.random(shape)


def _np_mtf(x: np.ndarray, gains, ratio: int) -> np.ndarray:
    return np.stack([mtf_filter_bands(cube, gains, ratio) for cube in x])


def _tensor(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(x.copy()).to(dtype)


@pytest.mark.parametrize(("shape", "ratio", "gains"), CASES, ids=IDS)
def test_mtf_filter_equals_numpy(shape, ratio, gains):
    x = _image(shape, 1)
    ref = _np_mtf(x, gains, ratio)
    got64 = T.mtf_filter(_tensor(x, torch.float64), gains, ratio)
    assert got64.dtype == torch.float64 and got64.shape == shape
    assert_rounding_close(got64, ref, MTF_TERMS, EPS64)
    # float32: the input rounded to float32 is the reference's input too
    x32 = x.astype(np.float32)
    got32 = T.mtf_filter(torch.from_numpy(x32), gains, ratio)
    assert got32.dtype == torch.float32
    assert_rounding_close(got32, _np_mtf(x32.astype(np.float64), gains, ratio), MTF_TERMS)


def test_mtf_filter_is_not_the_identity():
    """Guards the comparisons above against a filter that does nothing: a checkerboard
    (all energy at Nyquist, where the gain is GNyq) comes out strongly damped."""
    yy, xx = np.mgrid[0:48, 0:48]
    board = np.where((yy + xx) % 2 == 0, 1.0, -1.0)[None, None]
    out = T.mtf_filter(torch.from_numpy(board), (0.3,), 4).numpy()
    assert np.abs(out[..., 20:-20, 20:-20]).max() < 0.05


@pytest.mark.parametrize(("shape", "ratio", "gains"), CASES, ids=IDS)
def test_degrade_ms_equals_numpy(shape, ratio, gains):
    x = _image(shape, 2)
    ref = np.stack([np_degrade.degrade_ms(cube, gains, ratio) for cube in x])
    got = T.degrade_ms(_tensor(x, torch.float64), gains, ratio)
    assert got.shape == ref.shape
    assert_rounding_close(got, ref, MTF_TERMS, EPS64)


@pytest.mark.parametrize("ratio", [2, 4])
def test_decimate_equals_numpy(ratio):
    x = _image((2, 3, 23, 18), 3)
    got = T.decimate(torch.from_numpy(x), ratio).numpy()
    np.testing.assert_array_equal(got, np_degrade.decimate(x, ratio))


@pytest.mark.parametrize(("shape", "ratio", "gains"), CASES, ids=IDS)
def test_interp23_equals_numpy(shape, ratio, gains):
    n, b, h, w = shape
    x = _image((n, b, h // ratio + 1, w // ratio + 2), 4)
    ref = np.stack([np_resample.interp23(cube, ratio) for cube in x])
    got = T.interp23(_tensor(x, torch.float64), ratio)
    assert got.shape == ref.shape
    assert_rounding_close(got, ref, EXP_TERMS, EPS64)
    x32 = x.astype(np.float32)
    got32 = T.interp23(torch.from_numpy(x32), ratio)
    assert got32.dtype == torch.float32
    ref32 = np.stack([np_resample.interp23(c, ratio) for c in x32.astype(np.float64)])
    assert_rounding_close(got32, ref32, EXP_TERMS)


@pytest.mark.parametrize("kernel", ["exp", "cubic", "lanczos"])
def test_resample_equals_resample_cube_at_arbitrary_phases(kernel):
    """Sub-pixel phases and positions past both edges (the folded/dropped taps)."""
    x = _image((2, 3, 11, 14), 5)
    rows = np.linspace(-1.3, 11.7, 29)
    cols = np.linspace(-0.6, 13.9, 37) + 0.13
    ref = np.stack([np_resample.resample_cube(cube, rows, cols, kernel) for cube in x])
    got = T.resample(torch.from_numpy(x), rows, cols, kernel)
    assert_rounding_close(got, ref, EXP_TERMS, EPS64)
    x32 = x.astype(np.float32)
    ref32 = np.stack([np_resample.resample_cube(c, rows, cols, kernel) for c in x32])
    assert_rounding_close(T.resample(torch.from_numpy(x32), rows, cols, kernel), ref32, EXP_TERMS)


@pytest.mark.parametrize("offset", [(0.0, 0.0), (0.0, 0.5)])
@pytest.mark.parametrize("ratio", [2, 4])
def test_degrade_pan_equals_numpy(ratio, offset):
    pan = _image((2, 1, 45, 38), 6)
    ref = np.stack([np_degrade.degrade_pan(p, ratio, offset) for p in pan])
    got = T.degrade_pan(torch.from_numpy(pan), ratio, offset)
    assert got.shape == ref.shape
    assert_rounding_close(got, ref, 2 * 4 * ratio + 4, EPS64)


def _tile(h: int, w: int, ratio: float, n_bands: int) -> Tile:
    """A tile whose sample grid comes from :func:`sample_grid`, starting mid-scene."""
    irat = round(ratio)
    rows, lr_rows, ph_r = sample_grid(np.arange(101, 101 + h), (1 / ratio, -0.5), irat)
    cols, lr_cols, ph_c = sample_grid(np.arange(57, 57 + w), (1 / ratio, -0.5), irat)
    ctx = FuseContext(
        ratio=irat, n_bands=n_bands, ms_gains=(0.3,) * n_bands, pan_gain=0.15, weights=()
    )
    return Tile(
        pan=np.zeros((h, w)),
        ms=np.zeros((n_bands, h, w)),
        valid=np.ones((h, w), bool),
        core=(slice(0, h), slice(0, w)),
        sample_rows=rows,
        sample_cols=cols,
        ctx=ctx,
        lr_rows=lr_rows,
        lr_cols=lr_cols,
        block_phase=(ph_r, ph_c),
    )


@pytest.mark.parametrize("ratio", [2.0, 4.0, 4.0002])
def test_decimate_at_and_glp_lowpass_equal_the_tile_versions(ratio):
    """The sample positions of a tile (tiling.reader.sample_grid) drive the torch
    decimation and the MTF-GLP low-pass exactly as they drive the numpy ones."""
    gains = (0.29, 0.33, 0.12)
    tile = _tile(47, 39, ratio, len(gains))
    x = _image((2, 3, 47, 39), 7)
    xt = torch.from_numpy(x)
    got = T.decimate_at(xt, tile.sample_rows, tile.sample_cols).numpy()
    np.testing.assert_array_equal(got, np.stack([tile.samples(c) for c in x]))
    rows, cols = tile.lr_positions()
    low = T.glp_lowpass(xt, gains, tile.ctx.ratio, tile.sample_rows, tile.sample_cols, rows, cols)
    ref = np.stack([np_glp_lowpass(tile, c, gains) for c in x])
    assert_rounding_close(low, ref, MTF_TERMS + EXP_TERMS, EPS64)


def test_batched_equals_looped():
    shape, ratio, gains = CASES[0]
    x = torch.from_numpy(_image((4, *shape[1:]), 8))
    ops = {
        "mtf": lambda t: T.mtf_filter(t, gains, ratio),
        "interp23": lambda t: T.interp23(t, ratio),
        "degrade_ms": lambda t: T.degrade_ms(t, gains, ratio),
        "degrade_pan": lambda t: T.degrade_pan(t, ratio),
    }
    for name, op in ops.items():
        batched = op(x)
        looped = torch.cat([op(x[i : i + 1]) for i in range(x.shape[0])])
        assert batched.shape == looped.shape, name
        assert_rounding_close(batched, looped, MTF_TERMS, EPS64)
    # a (B, H, W) cube without the batch axis gives the same as its batch of one
    assert_rounding_close(ops["mtf"](x[0]), ops["mtf"](x[:1])[0], MTF_TERMS, EPS64)


def test_gradcheck_mtf_filter():
    x = torch.rand(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: T.mtf_filter(t, (0.3, 0.2), 4), (x,))


def test_gradcheck_interp23_and_resample():
    x = torch.rand(2, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: T.interp23(t, 2), (x,))
    rows, cols = np.array([-0.7, 0.4, 2.25, 3.9]), np.array([0.1, 1.6, 4.4])
    assert torch.autograd.gradcheck(lambda t: T.resample(t, rows, cols), (x,))


def test_gradcheck_degradations_and_decimate_at():
    x = torch.rand(1, 2, 9, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: T.degrade_ms(t, (0.3, 0.4), 2), (x,))
    assert torch.autograd.gradcheck(lambda t: T.degrade_pan(t, 2), (x,))
    assert torch.autograd.gradcheck(lambda t: T.decimate_at(t, [1, 4, 8], [0, 3, 9]), (x,))


def test_float32_gradients_are_finite_and_are_the_adjoint():
    """d/dx sum(v * (R x C^T)) = R^T v C: the gradient is the transposed operator."""
    x = torch.from_numpy(_image((1, 2, 7, 9), 9).astype(np.float32)).requires_grad_(True)
    rows, cols = np.linspace(-0.5, 6.5, 15), np.linspace(-0.5, 8.5, 19)
    v = torch.rand(1, 2, 15, 19)
    (T.resample(x, rows, cols) * v).sum().backward()
    g = x.grad
    assert g is not None and torch.isfinite(g).all()
    r, c = axis_matrix(rows, 7, "exp"), axis_matrix(cols, 9, "exp")
    expected = np.einsum("ij,nbik,kl->nbjl", r, v.double().numpy(), c)
    assert_rounding_close(g, expected, EXP_TERMS)
    x.grad = None
    T.mtf_filter(x, (0.3, 0.2), 4).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_refusals():
    x = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="2 MTF gains for 3 bands"):
        T.mtf_filter(x, (0.3, 0.3), 4)
    with pytest.raises(ValueError, match="power-of-two"):
        T.interp23(x, 3)
    with pytest.raises(TypeError, match="float32/float64"):
        T.mtf_filter(torch.zeros(1, 1, 8, 8, dtype=torch.int32), (0.3,), 4)
    with pytest.raises(ValueError, match=r"\(\.\.\., B, H, W\)"):
        T.mtf_filter(torch.zeros(8, 8), (0.3,), 4)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_output_stays_on_the_input_device(device):
    x = torch.from_numpy(_image((1, 2, 21, 22), 10)).to(device)
    for out in (T.mtf_filter(x, (0.3, 0.2), 4), T.interp23(x, 4), T.degrade_pan(x, 4)):
        assert out.device == x.device and out.dtype == x.dtype
    ref = _np_mtf(x.cpu().numpy(), (0.3, 0.2), 4)
    assert_rounding_close(T.mtf_filter(x, (0.3, 0.2), 4), ref, MTF_TERMS, EPS64)


def test_numpy_physics_does_not_import_torch():
    probe = (
        "import sys, physics, physics.mtf, physics.kernels, physics.resample,"
        " physics.degrade, physics.sensors; print('torch' in sys.modules)"
    )
    assert run_python(probe).split()[-1] == "False"
    # and the probe does see torch once the torch twin is imported
    seen = run_python("import sys, physics.torch_ops; print('torch' in sys.modules)")
    assert seen.split()[-1] == "True"
