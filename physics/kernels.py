"""Interpolation kernels used to put MS samples on the PAN grid.

Every kernel is a continuous function ``k(d)`` of the distance ``d`` between an output
position and a source sample, in source-pixel units, with a finite support. One
function, :func:`axis_matrix`, turns any kernel into a dense 1-D resampling matrix; the
2-D resampling is separable (rows, then columns), so arbitrary sub-pixel phases (the
7.5 m Landsat PAN/MS offset, a half-pixel WorldView offset) are handled by the same code.

The ``exp`` kernel is the limit function of the toolbox's 23-tap interpolator
(Vivone et al., IEEE GRSM 2021; Aiazzi et al. 2002): upsampling by 2 with the symmetric
23-tap half-band filter is an *interpolating* subdivision scheme (centre tap 1, zero at
even lags), so cascading it L times equals sampling its limit function phi at steps of
1/2^L. Sampling phi at integer phases reproduces the toolbox's EXP exactly; other
phases read phi between its dyadic samples.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from errors import unknown_name

#: Odd-lag taps of the 23-tap interpolator, lags 1, 3, ..., 11 (quality.md, "23-tap").
TAPS_23 = (
    0.610668182370,
    -0.145397186478,
    0.043619155884,
    -0.010385513306,
    0.001615524292,
    -0.000120162964,
)


def half_band_23() -> np.ndarray:
    """The 23-tap kernel: 1 at lag 0, 0 at even lags, ``TAPS_23`` at odd lags +-1..+-11."""
    k = np.zeros(23)
    k[11] = 1.0
    for i, t in enumerate(TAPS_23):
        lag = 2 * i + 1
        k[11 + lag] = t
        k[11 - lag] = t
    return k


_PHI_LEVEL = 10  # phi tabulated at steps of 1/1024 source pixel


@lru_cache(maxsize=1)
def _phi_table() -> tuple[np.ndarray, float]:
    """Tabulate the subdivision limit function phi by cascading the 23-tap filter.

    Starting from a unit impulse, each stage inserts zeros between samples and
    correlates with the half-band kernel; after L stages the samples are phi(n / 2^L)
    exactly (interpolating scheme). Returns the table and its support half-width.
    """
    h = half_band_23()
    sig = np.array([1.0])
    for _ in range(_PHI_LEVEL):
        up = np.zeros(2 * sig.size - 1)
        up[::2] = sig
        sig = np.convolve(up, h)  # symmetric kernel: convolution == correlation
    half = (sig.size - 1) // 2
    return sig, half / 2**_PHI_LEVEL


def exp_kernel(d: np.ndarray) -> np.ndarray:
    """phi(d): exact at dyadic d, linearly interpolated between 1/1024 steps otherwise."""
    table, support = _phi_table()
    pos = (np.asarray(d, dtype=np.float64) + support) * 2**_PHI_LEVEL
    out = np.interp(pos, np.arange(table.size), table, left=0.0, right=0.0)
    return out


def nearest_kernel(d: np.ndarray) -> np.ndarray:
    """Box of width 1 (ties go to the lower sample, like GDAL's nearest)."""
    d = np.asarray(d, dtype=np.float64)
    return ((d > -0.5) & (d <= 0.5)).astype(np.float64)


def bilinear_kernel(d: np.ndarray) -> np.ndarray:
    """Triangle: max(0, 1 - |d|)."""
    return np.maximum(0.0, 1.0 - np.abs(np.asarray(d, dtype=np.float64)))


def cubic_kernel(d: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys (1981) cubic convolution with a = -0.5, GDAL's ``cubic`` and MATLAB's bicubic."""
    x = np.abs(np.asarray(d, dtype=np.float64))
    x2, x3 = x * x, x * x * x
    near = (a + 2) * x3 - (a + 3) * x2 + 1
    far = a * x3 - 5 * a * x2 + 8 * a * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def cubicspline_kernel(d: np.ndarray) -> np.ndarray:
    """Cubic B-spline (GDAL's ``cubicspline`` smoothing kernel), support 2."""
    x = np.abs(np.asarray(d, dtype=np.float64))
    return np.where(x < 1, (4 - 6 * x**2 + 3 * x**3) / 6, np.where(x < 2, (2 - x) ** 3 / 6, 0.0))


def lanczos_kernel(d: np.ndarray, a: int = 3) -> np.ndarray:
    """Lanczos-3 windowed sinc, GDAL's ``lanczos``."""
    x = np.asarray(d, dtype=np.float64)
    return np.where(np.abs(x) < a, np.sinc(x) * np.sinc(x / a), 0.0)


#: name -> (kernel, support half-width in source pixels). ``--resampling`` reads this.
KERNELS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    "exp": (exp_kernel, 11.0),
    "nearest": (nearest_kernel, 0.5),
    "bilinear": (bilinear_kernel, 1.0),
    "cubic": (cubic_kernel, 2.0),
    "cubicspline": (cubicspline_kernel, 2.0),
    "lanczos": (lanczos_kernel, 3.0),
}


def get_kernel(name: str) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    """Look a resampling kernel up by name; unknown names list the valid ones."""
    try:
        return KERNELS[name]
    except KeyError:
        raise unknown_name("resampling", name, sorted(KERNELS), "--resampling") from None


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Half-sample symmetric reflection of integer indices into [0, n) (-1 -> 0, n -> n-1)."""
    period = 2 * n
    m = np.mod(idx, period)
    return np.where(m < n, m, period - 1 - m)


def axis_matrix(src_pos: np.ndarray, n_src: int, kernel: str, normalise: bool = True) -> np.ndarray:
    """Dense (n_dst, n_src) matrix that resamples one axis.

    ``src_pos[i]`` is the continuous source index (sample j's centre at j) that output
    i falls on. Borders: for ``exp``, taps outside [0, n_src) are folded back with
    symmetric borders, the convention quality.md asks of a georeferenced tool; for the
    GDAL kernels (nearest ... lanczos) they are dropped and the remaining weights
    renormalised, as GDAL's resampling does, so results match gdal_pansharpen at the
    scene edges too. Rows are normalised to sum 1
    so that a constant stays constant whatever the phase (``exp``, cubic and lanczos
    are partitions of unity at the grid phases; this also holds them there in between).
    """
    fn, support = get_kernel(kernel)
    src_pos = np.asarray(src_pos, dtype=np.float64)
    lo = np.floor(src_pos - support).astype(np.int64)
    width = int(2 * support) + 2
    taps = lo[:, None] + np.arange(width)[None, :]
    w = fn(src_pos[:, None] - taps)
    if kernel == "exp":
        cols = reflect_index(taps, n_src)
    else:
        inside = (taps >= 0) & (taps < n_src)
        w = w * inside
        cols = np.clip(taps, 0, n_src - 1)
    mat = np.zeros((src_pos.size, n_src))
    rows = np.repeat(np.arange(src_pos.size), width)
    np.add.at(mat, (rows, cols.ravel()), w.ravel())
    if normalise:
        # Only rows that are off by more than rounding: at the toolbox's grid phases the
        # 23-tap taps sum to 1 - 4e-10 and are kept bit-for-bit.
        s = mat.sum(axis=1, keepdims=True)
        s[(s == 0) | (np.abs(s - 1.0) < 1e-9)] = 1.0
        mat /= s
    return mat
