"""PSNR as pansharp defines it (quality.md A.6 "PSNR and SSIM"; not in the toolbox).

PSNR = 10 log10(peak^2 / MSE), MSE over all bands and pixels of the evaluated area,
peak = 2^L - 1 for the bit depth L. Identical images give +inf (the ideal value).
"""

from __future__ import annotations

import numpy as np

from quality.checks import check_bit_depth, check_pair
from quality.ergas import error_partial


def psnr_finish(sq_err: np.ndarray, count: int, bit_depth: int) -> float:
    """PSNR from the per-band sums of squared errors over ``count`` pixels per band."""
    mse = float(np.sum(sq_err)) / (count * len(sq_err))
    if mse == 0:
        return float("inf")
    peak = 2.0**bit_depth - 1.0
    return float(10.0 * np.log10(peak * peak / mse))


def psnr(fused: np.ndarray, gt: np.ndarray, bit_depth: int) -> float:
    """PSNR in dB of (B, H, W) ``fused`` against ``gt`` for a ``bit_depth``-bit sensor."""
    L = check_bit_depth(bit_depth)
    f, g = check_pair(fused, gt, ("fused", "gt"))
    sq, _, count = error_partial(f, g)
    return psnr_finish(sq, count, L)
