"""Helpers shared by the classical CS and MRA methods.

Three concerns live here so that every method handles them the same way:

* **Global statistics from additive sums.** A method's ``fit_tile`` returns sums
  (pixel count, sums, cross-products; histograms in ``histogram.py``) over the tile's
  core valid pixels;
  :class:`Moments` turns the summed totals into means and (N-1)-normalised covariances,
  the ``mean2``/``std2``/``cov`` of the toolbox (Vivone et al., IEEE GRSM 2021), so the
  coefficients are identical whatever the tiling.
* **Keeping invalid pixels out.** A statistic of a *filtered* image only uses pixels whose
  whole filter footprint is valid (:func:`eroded_core`); the tile's outside counts as
  invalid, which is what a tile reaching past the scene edge sees, so tiled and whole-image
  runs pick the same pixels. Before filtering in ``apply`` the invalid pixels are replaced
  by the global means (:func:`filled`) so that garbage or NaN never spreads.
* **The toolbox's low-pass operators**, built on ``physics`` (never re-implemented):
  the MTF-matched GLP (MTF filter, decimation at the MS sample positions, 23-tap
  re-interpolation), the Starck-Murtagh B3 filter bank of ``LPfilterPlusDec``/``AWLP``,
  the 0.3-gain Gaussian of ``LPfilterGauss`` and the bicubic decimation/interpolation of
  ``PRACS``/``AWLP``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from models.base import Tile
from physics.mtf import MTF_HALF, MTF_SIZE, mtf_filter, mtf_filter_bands
from physics.resample import _imresize_matrix, resample_cube


def _ndimage():
    """scipy.ndimage, imported on first use (it costs ~0.4 s of CLI start-up)."""
    from scipy import ndimage

    return ndimage


F64 = np.float64

# --------------------------------------------------------------------------- moments


def moment_sums(prefix: str, rows: list[np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    """Additive sums of the variables ``rows`` (each a PAN- or LR-grid array) over ``mask``.

    Returns ``{prefix_n: [N], prefix_s: sum x (K,), prefix_ss: sum x x^T (K, K)}``,
    float64; adding these over tiles gives the sums over the scene.
    """
    x = np.stack([np.asarray(r, dtype=F64)[mask] for r in rows]) if rows else np.zeros((0, 0))
    return {
        f"{prefix}_n": np.array([x.shape[1]], dtype=F64),
        f"{prefix}_s": x.sum(axis=1),
        f"{prefix}_ss": x @ x.T,
    }


@dataclass(frozen=True)
class Moments:
    """Means, raw second moments and unbiased covariance of K variables over N pixels.

    cov = (sum x x^T - N m m^T) / (N - 1), MATLAB's ``cov``/``std2`` normalisation.
    With fewer than two pixels the covariance is zero; the methods' ``fit_finish``
    refuses such a set first (``guards.require_pixels``).
    """

    n: float
    mean: np.ndarray
    raw: np.ndarray  # sum x x^T
    cov: np.ndarray

    @classmethod
    def from_totals(cls, totals: dict[str, np.ndarray], prefix: str) -> Moments:
        n = float(np.asarray(totals[f"{prefix}_n"]).sum())
        s = np.asarray(totals[f"{prefix}_s"], dtype=F64)
        ss = np.asarray(totals[f"{prefix}_ss"], dtype=F64)
        mean = s / n if n > 0 else np.zeros_like(s)
        if n > 1:
            cov = (ss - n * np.outer(mean, mean)) / (n - 1)
            cov = 0.5 * (cov + cov.T)
        else:
            cov = np.zeros_like(ss)
        return cls(n, mean, ss, cov)

    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(np.diag(self.cov), 0.0))


def ratio_or(num: float, den: float, default: float = 0.0) -> float:
    """num / den, or ``default`` when the denominator is zero or not finite."""
    den = float(den)
    if den == 0.0 or not np.isfinite(den):
        return default
    return float(num) / den


def regression_slopes(cov: np.ndarray, x_idx: list[int], y_idx: int) -> np.ndarray:
    """OLS slopes of variable ``y`` on variables ``x`` (with an intercept) from a covariance.

    Least squares on the normal equations ``Cxx b = Cxy`` (minimum-norm if singular).
    """
    cxx = cov[np.ix_(x_idx, x_idx)]
    cxy = cov[x_idx, y_idx]
    return np.linalg.lstsq(cxx, cxy, rcond=None)[0]


def sign_constrained_lstsq(gram: np.ndarray, rhs: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """min ||H x - t||^2 subject to signs_i * x_i >= 0, from G = H^T H and c = H^T t.

    The substitution x = D s (D = diag(signs)) gives a non-negative least squares on
    s; with G' = D G D = V diag(e) V^T, ||A s - b||^2 with A = diag(sqrt e) V^T and
    b = diag(1/sqrt e) V^T D c has the same minimiser, which ``scipy.optimize.nnls``
    finds (the role of MATLAB's ``lsqlin`` in BDSD-PC; Vivone, IEEE TGRS 2019).
    """
    d = np.asarray(signs, dtype=F64)
    g = d[:, None] * gram * d[None, :]
    c = d * rhs
    e, v = np.linalg.eigh(0.5 * (g + g.T))
    if e.size == 0 or e.max() <= 0:
        return np.zeros_like(d)
    keep = e > e.max() * e.size * np.finfo(F64).eps
    root = np.sqrt(e[keep])
    a = root[:, None] * v[:, keep].T
    b = (v[:, keep].T @ c) / root
    from scipy.optimize import nnls  # lazy: keeps CLI start-up fast

    s, _ = nnls(a, b, maxiter=50 * d.size)
    return d * s


# ---------------------------------------------------------------------------- masks


def erode(mask: np.ndarray, half: int) -> np.ndarray:
    """Pixels whose (2 half + 1)^2 neighbourhood is all True; outside the array is False."""
    if half <= 0:
        return mask.astype(bool, copy=True)
    m = _ndimage().minimum_filter(mask.astype(np.uint8), size=2 * half + 1, mode="constant", cval=0)
    return m.astype(bool)


def eroded_core(tile: Tile, half: int) -> np.ndarray:
    """Core valid pixels whose filter footprint of half-width ``half`` is all valid."""
    return tile.core_valid() & erode(tile.valid, half)


def filled(tile: Tile, pan_fill: float, ms_fill: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PAN and MS as float64 with invalid pixels replaced by constants (global means).

    Filters in ``apply`` then never spread nodata garbage (or NaN) into valid pixels.
    """
    valid = np.asarray(tile.valid, dtype=bool)
    pan = np.where(valid, np.asarray(tile.pan, dtype=F64), float(pan_fill))
    fills = np.asarray(ms_fill, dtype=F64).reshape(-1, 1, 1)
    ms = np.where(valid[None], np.asarray(tile.ms, dtype=F64), fills)
    return pan, ms


def zero_invalid(tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """PAN and MS as float64 with invalid pixels set to 0 (for ``fit_tile`` filtering:
    the affected pixels are excluded by :func:`eroded_core`, only NaN must not spread)."""
    return filled(tile, 0.0, np.zeros(tile.ms.shape[0]))


def out_dtype(tile: Tile, fused: np.ndarray) -> np.ndarray:
    """Return float32 for float32 tiles (as the engine fed them), float64 otherwise."""
    if np.asarray(tile.ms).dtype == np.float32:
        return fused.astype(np.float32)
    return fused


# ------------------------------------------------------------------ low-pass filters


def gauss_lowpass_gain() -> float:
    """GNyq giving ``physics.mtf.mtf_kernel`` the Gaussian of the toolbox's ``LPfilterGauss``.

    ``LPfilterGauss`` designs the 41-tap filter with GNyq = 0.3 but sigma =
    sqrt((N fcut / 2)^2 / (-2 ln GNyq)) with N = 41, where the MTF filters use N - 1 = 40.
    The same sigma comes from GNyq' = 0.3^((40/41)^2) in the N - 1 formula.
    """
    return 0.3 ** (((MTF_SIZE - 1) / MTF_SIZE) ** 2)


def gauss_lowpass(img: np.ndarray, ratio: int) -> np.ndarray:
    """The toolbox's ``LPfilterGauss``: 41x41 Gaussian with gain 0.3 at Nyquist, replicate
    borders. Used by BT-H and by the MTF-GLP PAN equalisation (support ``MTF_HALF``)."""
    return mtf_filter(img, gauss_lowpass_gain(), ratio)


def reinterpolate(tile: Tile, lr: np.ndarray) -> np.ndarray:
    """Put a (B, h, w) cube sampled at the tile's MS positions back on its PAN grid.

    The 23-tap limit kernel (``physics.kernels`` ``exp``) at the pixel's position among
    the samples (:meth:`Tile.lr_positions`): (i - sample_rows[0]) / ratio, the toolbox's
    ``interp23tap`` phase, when the ratio is an exact integer, and the same phase carried
    along the true scene-wide sample grid when it is not (4.0002).
    """
    rows, cols = tile.lr_positions()
    return resample_cube(np.asarray(lr, dtype=F64), rows, cols, "exp").astype(F64, copy=False)


def glp_lowpass(tile: Tile, bands: np.ndarray, gains: tuple[float, ...]) -> np.ndarray:
    """MTF-GLP low-pass of a (B, H, W) cube: per-band MTF filter, decimation, 23-tap EXP.

    ``PAN_LP = interp23tap(imresize(imfilter(P, h_b), 1/ratio, 'nearest'), ratio)`` of
    the toolbox (Aiazzi et al., PE&RS 2006; Vivone et al., GRSM 2021): the decimation
    keeps the pixels at the MS sample positions, i.e. ``tile.samples``.
    """
    lp = mtf_filter_bands(bands, gains, tile.ctx.ratio)
    return reinterpolate(tile, tile.samples(lp))


def glp_lowpass_pan(tile: Tile, pan: np.ndarray, gains: tuple[float, ...]) -> np.ndarray:
    """(B, H, W) GLP low-passes of one 2-D PAN with each band's gain, each distinct gain
    filtered once (the MTF-GLP-FS case, where the PAN is not equalised per band)."""
    uniq = sorted(set(float(g) for g in gains))
    low = glp_lowpass(tile, np.broadcast_to(pan, (len(uniq), *pan.shape)), tuple(uniq))
    return low[[uniq.index(float(g)) for g in gains]]


def glp_reach(ratio: int) -> int:
    """Half-width in PAN pixels of the GLP low-pass: MTF (20) + 23-tap support (11 MS
    pixels) + one MS pixel for the sample phase."""
    return MTF_HALF + 11 * ratio + ratio


def _levels(ratio: int) -> int:
    return max(1, int(np.ceil(np.log2(ratio))))


@lru_cache(maxsize=16)
def starck_murtagh_kernel(ratio: int) -> np.ndarray:
    """1-D kernel of the toolbox's B3-spline filter bank approximation (read-only).

    ``LPfilterPlusDec``/``AWLP``/``ATWT`` run ``ndwt2`` with h = sqrt(2) [1 4 6 4 1]/16
    for L = ceil(log2 ratio) levels, zero every detail band and invert with the same
    filter: without dilation between levels, each level filters rows and columns once
    on analysis and once on synthesis (the sqrt(2) factors cancel against the 1/4 of the
    inverse), so the approximation is [1 4 6 4 1]/16 convolved 2L times, separable.
    """
    h = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    k = np.array([1.0])
    for _ in range(2 * _levels(ratio)):
        k = np.convolve(k, h)
    k.setflags(write=False)
    return k


def starck_murtagh_half(ratio: int) -> int:
    """Half-width of :func:`starck_murtagh_kernel` (4 L pixels)."""
    return 4 * _levels(ratio)


def starck_murtagh_lowpass(img: np.ndarray, ratio: int) -> np.ndarray:
    """Separable B3-spline approximation of the last two axes, half-sample symmetric
    borders (the ``'sym'`` extension of ``ndwt2``)."""
    k = starck_murtagh_kernel(ratio)
    out = _ndimage().correlate1d(np.asarray(img, dtype=F64), k, axis=-1, mode="reflect")
    return _ndimage().correlate1d(out, k, axis=-2, mode="reflect")


def bicubic_reach(ratio: int) -> int:
    """Half-width in PAN pixels of :func:`bicubic_down_up` (4 ratio) plus the block phase."""
    return 4 * ratio + ratio


def bicubic_down_up(tile: Tile, img: np.ndarray) -> np.ndarray:
    """``imresize(imresize(X, 1/ratio), ratio)`` (antialiased bicubic) on the tile's blocks.

    The toolbox's PRACS and AWLP low-pass. The ratio x ratio blocks that ``imresize``
    averages are those whose centre is half a PAN pixel before each MS sample (the
    sample sits at ratio j + ratio/2 of its block), so the tile is cropped to whole
    blocks of that global grid, shrunk, enlarged back, and padded by replication (the
    padding and the tile's own borders lie in the halo; :func:`bicubic_reach`).
    """
    ratio = tile.ctx.ratio
    arr = np.asarray(img, dtype=F64)
    h, w = arr.shape[-2:]
    o_r, o_c = tile.block_offsets()
    nr, nc = (h - o_r) // ratio, (w - o_c) // ratio
    if nr < 1 or nc < 1:
        return arr.copy()
    crop = arr[..., o_r : o_r + nr * ratio, o_c : o_c + nc * ratio]
    down_r = _imresize_matrix(nr * ratio, 1.0 / ratio, nr)
    down_c = _imresize_matrix(nc * ratio, 1.0 / ratio, nc)
    up_r = _imresize_matrix(nr, float(ratio), nr * ratio)
    up_c = _imresize_matrix(nc, float(ratio), nc * ratio)
    mat_r = up_r @ down_r
    mat_c = (up_c @ down_c).T
    low = np.matmul(np.matmul(mat_r, crop), mat_c)
    pad = [(0, 0)] * (arr.ndim - 2) + [
        (o_r, h - o_r - nr * ratio),
        (o_c, w - o_c - nc * ratio),
    ]
    return np.pad(low, pad, mode="edge")
