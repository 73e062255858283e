"""ERGAS (Ranchin & Wald, PE&RS 2000; quality.md A.6 "ERGAS"; toolbox ``ERGAS.m``).

ERGAS = (100 / ratio) sqrt((1/B) sum_b MSE_b / mu_b^2), mu_b the mean of reference
band b over the evaluated area. Ideal 0.
"""

from __future__ import annotations

import numpy as np

from errors import QualityError
from quality.checks import check_pair, check_ratio


def error_partial(fused: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per band: (sum of squared errors, sum of the reference, pixel count).

    The sums ERGAS and PSNR are made of; additive over tiles.
    """
    d = fused - gt
    sq = np.einsum("bij,bij->b", d, d)
    return sq, gt.sum(axis=(1, 2)), gt.shape[1] * gt.shape[2]


def ergas_finish(sq_err: np.ndarray, gt_sum: np.ndarray, count: int, ratio: int) -> float:
    """ERGAS from the per-band sums; undefined when a reference band has zero mean."""
    mu = gt_sum / count
    zero = np.flatnonzero(mu == 0)
    if zero.size:
        raise QualityError(
            f"ERGAS is undefined: reference band(s) {zero.tolist()} have zero mean over the "
            "evaluated area (empty or nodata band?)"
        )
    mse = sq_err / count
    return float((100.0 / ratio) * np.sqrt(np.mean(mse / (mu * mu))))


def ergas(fused: np.ndarray, gt: np.ndarray, ratio: int) -> float:
    """ERGAS of (B, H, W) ``fused`` against ``gt`` for the PAN/MS scale ``ratio``."""
    r = check_ratio(ratio, "ERGAS")
    f, g = check_pair(fused, gt, ("fused", "gt"))
    return ergas_finish(*error_partial(f, g), r)
