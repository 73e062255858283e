"""SSIM as pansharp defines it (quality.md A.6 "PSNR and SSIM"; not in the toolbox).

Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004, as in their ``ssim_index.m``: an
11 x 11 Gaussian window (sigma 1.5, ``fspecial``), statistics at every 'valid'
position, K1 = 0.01, K2 = 0.03, C1 = (K1 D)^2, C2 = (K2 D)^2 with data range
D = 2^L - 1, Gaussian-weighted (biased) variances, no downsampling; mean of the SSIM
map per band, then mean over bands. Ideal 1.
"""

from __future__ import annotations

import numpy as np

from quality.checks import check_bit_depth, check_min_size, check_pair
from quality.windows import gaussian_taps, weighted_valid

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
K1, K2 = 0.01, 0.03


def _gauss(a: np.ndarray, taps: np.ndarray) -> np.ndarray:
    return weighted_valid(weighted_valid(a, taps, -2), taps, -1)


def ssim_map(x: np.ndarray, y: np.ndarray, bit_depth: int) -> np.ndarray:
    """SSIM at every valid 11 x 11 window position of two 2-D arrays."""
    taps = gaussian_taps(SSIM_WINDOW, SSIM_SIGMA)
    peak = 2.0**bit_depth - 1.0
    c1, c2 = (K1 * peak) ** 2, (K2 * peak) ** 2
    mx, my = _gauss(x, taps), _gauss(y, taps)
    mxx, myy, mxy = mx * mx, my * my, mx * my
    vx = _gauss(x * x, taps) - mxx
    vy = _gauss(y * y, taps) - myy
    cxy = _gauss(x * y, taps) - mxy
    return ((2 * mxy + c1) * (2 * cxy + c2)) / ((mxx + myy + c1) * (vx + vy + c2))


def ssim_partial(fused: np.ndarray, gt: np.ndarray, bit_depth: int) -> tuple[np.ndarray, int]:
    """Per-band sums of the SSIM map over the windows inside the arrays, and their count."""
    sums = np.array([ssim_map(g, f, bit_depth).sum() for f, g in zip(fused, gt, strict=True)])
    count = (fused.shape[1] - SSIM_WINDOW + 1) * (fused.shape[2] - SSIM_WINDOW + 1)
    return sums, count


def ssim_finish(sums: np.ndarray, count: int) -> float:
    """Mean over bands of each band's mean SSIM."""
    return float(np.mean(sums / count))


def ssim(fused: np.ndarray, gt: np.ndarray, bit_depth: int) -> float:
    """SSIM of (B, H, W) ``fused`` against ``gt`` for a ``bit_depth``-bit sensor."""
    L = check_bit_depth(bit_depth)
    f, g = check_pair(fused, gt, ("fused", "gt"))
    check_min_size(f.shape[1], f.shape[2], SSIM_WINDOW, "SSIM (one 11x11 window)")
    return ssim_finish(*ssim_partial(f, g, L))
