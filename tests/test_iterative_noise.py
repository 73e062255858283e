"""Positional noise (models.iterative.noise): a pure function of (seed, pixel, band, step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from errors import OptionError
from models.iterative.noise import positional_noise

N_STAT = 1000  # 1000 x 1000 = 1e6 samples
SIGMAS = 5.0


def _window(y0: int, h: int, x0: int, w: int, **kw) -> torch.Tensor:
    args = {"seed": 42, "step": 3, "bands": 2, "dtype": torch.float64} | kw
    return positional_noise(rows=np.arange(y0, y0 + h), cols=np.arange(x0, x0 + w), **args)


def test_shape_dtype_and_overlap_agreement() -> None:
    a = _window(100, 40, 200, 30)
    b = _window(125, 50, 215, 64)  # overlaps a on rows 125..139, cols 215..229
    assert a.shape == (2, 40, 30) and a.dtype == torch.float64
    assert torch.equal(a[:, 25:, 15:], b[:, :15, :15])


def test_any_split_equals_whole_window() -> None:
    whole = _window(0, 37, 1000, 53)
    for th, tw in ((8, 8), (13, 7), (37, 1), (1, 53)):
        tiles = torch.empty_like(whole)
        for y in range(0, 37, th):
            for x in range(0, 53, tw):
                h, w = min(th, 37 - y), min(tw, 53 - x)
                tiles[:, y : y + h, x : x + w] = _window(y, h, 1000 + x, w)
        assert torch.equal(tiles, whole)


def test_non_contiguous_indices_and_bands_prefix() -> None:
    rows = np.array([5, 900, -3, 17])
    cols = np.array([2**40, 0, 7])
    z = positional_noise(1, rows, cols, 0, 4, torch.float64)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            one = positional_noise(1, [r], [c], 0, 4, torch.float64)
            assert torch.equal(z[:, i, j], one[:, 0, 0])
    # Band b's values do not depend on how many bands were asked for.
    assert torch.equal(z[:2], positional_noise(1, rows, cols, 0, 2, torch.float64))


def test_float32_is_rounded_float64() -> None:
    a = _window(0, 16, 0, 16)
    b = _window(0, 16, 0, 16, dtype=torch.float32)
    assert b.dtype == torch.float32 and torch.equal(b, a.float())


@pytest.mark.parametrize("change", [{"seed": 43}, {"step": 4}, {"seed": -42}])
def test_different_keys_differ(change: dict) -> None:
    a = _window(0, 64, 0, 64)
    b = _window(0, 64, 0, 64, **change)
    assert (a != b).all()
    # Independent normals: the sample correlation is ~N(0, 1/n), n = 8192.
    r = np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]
    assert abs(r) < SIGMAS / np.sqrt(a.numel())


def test_bands_differ() -> None:
    z = _window(0, 64, 0, 64)
    assert (z[0] != z[1]).all()
    r = np.corrcoef(z[0].flatten().numpy(), z[1].flatten().numpy())[0, 1]
    assert abs(r) < SIGMAS / np.sqrt(z[0].numel())


@pytest.fixture(scope="module")
def big() -> np.ndarray:
    return positional_noise(2026, np.arange(N_STAT), np.arange(N_STAT), 0, 1, torch.float64)[
        0
    ].numpy()


def test_moments_standard_normal(big: np.ndarray) -> None:
    n = big.size
    # Standard errors for N(0, 1): mean 1/sqrt(n); variance sqrt(2/n) (var of s^2 = 2/n);
    # fourth moment E z^4 = 3 with var(z^4) = 105 - 9 = 96.
    assert abs(big.mean()) < SIGMAS / np.sqrt(n)
    assert abs(big.var() - 1.0) < SIGMAS * np.sqrt(2.0 / n)
    assert abs((big**4).mean() - 3.0) < SIGMAS * np.sqrt(96.0 / n)
    # Tail fraction beyond 3 sigma: p = 0.0026998, binomial standard error.
    p = 0.0026997960632601866
    assert abs((np.abs(big) > 3).mean() - p) < SIGMAS * np.sqrt(p * (1 - p) / n)


def test_no_neighbour_correlation(big: np.ndarray) -> None:
    for a, b in (
        (big[:, :-1], big[:, 1:]),  # horizontal neighbours
        (big[:-1, :], big[1:, :]),  # vertical neighbours
        (big[:-1, :-1], big[1:, 1:]),  # diagonal
        (big[:, :-2], big[:, 2:]),  # two apart
    ):
        r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert abs(r) < SIGMAS / np.sqrt(a.size)
    # Rows and columns as wholes: the means of each row are ~N(0, 1/N_STAT).
    row_means = big.mean(axis=1)
    assert abs(row_means.std() * np.sqrt(N_STAT) - 1.0) < SIGMAS / np.sqrt(2 * N_STAT)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_identical_to_cpu() -> None:
    cpu = _window(10, 33, 20, 17, dtype=torch.float32)
    gpu = _window(10, 33, 20, 17, dtype=torch.float32, device="cuda")
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"rows": np.arange(4.0)}, "rows must be a 1-D array of integer"),
        ({"cols": np.zeros((2, 2), dtype=np.int64)}, "cols must be a 1-D array"),
        ({"bands": 0}, "bands must be >= 1"),
        ({"step": 1.5}, "step must be an integer"),
        ({"dtype": torch.int32}, "dtype must be a torch floating dtype"),
    ],
)
def test_bad_arguments(kw: dict, needle: str) -> None:
    args = {"seed": 0, "rows": np.arange(4), "cols": np.arange(4), "step": 0, "bands": 1} | kw
    with pytest.raises(OptionError, match=needle):
        positional_noise(**args)
