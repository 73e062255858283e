"""The two evaluation protocols on in-memory arrays, and what "ideal" and "better" mean.

quality.md A (reduced resolution, Wald's protocol) and B (full resolution). These
drivers take the arrays a method produced; building them (degradation, fusion) is the
caller's. For scenes larger than memory use ``accumulators``, which give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from physics.mtf import mtf_filter_bands
from physics.resample import interp23
from quality.checks import (
    BLOCK,
    as_cube,
    check_bit_depth,
    check_gains,
    check_min_size,
    check_pair,
    check_pow2_ratio,
    check_ratio,
)
from quality.ergas import ergas_finish, error_partial
from quality.full_resolution import (
    check_full,
    check_ms,
    check_pan,
    d_lambda_finish,
    d_lambda_partial,
    d_s_finish,
    d_s_partial,
    pan_lowpass,
)
from quality.psnr import psnr_finish
from quality.q2n import q2n
from quality.sam import sam_finish, sam_partial
from quality.scc import scc_finish, scc_partial
from quality.ssim import ssim_finish, ssim_partial
from quality.uiqi import q_avg_finish, q_avg_partial

#: quality.md A.5: keep rows/cols [20 : N-21] (20 leading, 21 trailing lines dropped).
CUT_LEADING = 20
CUT_TRAILING = 21

REDUCED_KEYS = ("q2n", "q", "sam", "ergas", "scc", "psnr", "ssim")
FULL_KEYS = ("d_lambda", "d_s", "qnr", "d_lambda_k", "hqnr")

#: Value of each index for a perfect result.
IDEAL: dict[str, float] = {
    "q2n": 1.0,
    "q": 1.0,
    "sam": 0.0,
    "ergas": 0.0,
    "scc": 1.0,
    "psnr": math.inf,
    "ssim": 1.0,
    "d_lambda": 0.0,
    "d_s": 0.0,
    "qnr": 1.0,
    "d_lambda_k": 0.0,
    "hqnr": 1.0,
}

#: True where a larger value is better, False where a smaller one is.
HIGHER_IS_BETTER: dict[str, bool] = {
    "q2n": True,
    "q": True,
    "sam": False,
    "ergas": False,
    "scc": True,
    "psnr": True,
    "ssim": True,
    "d_lambda": False,
    "d_s": False,
    "qnr": True,
    "d_lambda_k": False,
    "hqnr": True,
}


def is_better(index: str, a: float, b: float) -> bool:
    """Whether value ``a`` of ``index`` is strictly better than ``b``."""
    return a > b if HIGHER_IS_BETTER[index] else a < b


def cut_bounds(n: int) -> tuple[int, int]:
    """[start, stop) of the border cut of an axis of ``n`` samples."""
    return CUT_LEADING, n - CUT_TRAILING


def border_cut(img: np.ndarray) -> np.ndarray:
    """Rows and columns [20 : N-21] of the last two axes (quality.md A.5)."""
    h, w = img.shape[-2:]
    return img[..., CUT_LEADING : h - CUT_TRAILING, CUT_LEADING : w - CUT_TRAILING]


def min_reduced_size(block: int = BLOCK) -> int:
    """Smallest scene side whose cut area still holds one 32 x 32 block (73)."""
    return block + CUT_LEADING + CUT_TRAILING


def reduced_resolution_indexes(
    fused: np.ndarray, gt: np.ndarray, ratio: int, bit_depth: int
) -> dict[str, float]:
    """Reduced-resolution indexes of ``fused`` against the ground truth ``gt``.

    Both are (B, H, W) raw DN on the GT grid; the border cut is applied here. Keys:
    q2n, q, sam, ergas, scc, psnr, ssim (quality.md A.5-A.6).
    """
    r = check_ratio(ratio, "ERGAS")
    L = check_bit_depth(bit_depth)
    f, g = check_pair(fused, gt, ("fused", "gt"))
    m = min_reduced_size()
    check_min_size(
        f.shape[1],
        f.shape[2],
        m,
        "reduced-resolution evaluation",
        f"the border cut drops {CUT_LEADING + CUT_TRAILING} lines and one 32x32 block must remain",
    )
    f, g = border_cut(f), border_cut(g)
    sq, gsum, count = error_partial(f, g)
    return {
        "q2n": q2n(f, g),
        "q": q_avg_finish(*q_avg_partial(f, g)),
        "sam": sam_finish(*sam_partial(f, g)),
        "ergas": ergas_finish(sq, gsum, count, r),
        "scc": scc_finish(scc_partial(f, g)),
        "psnr": psnr_finish(sq, count, L),
        "ssim": ssim_finish(*ssim_partial(f, g, L)),
    }


def full_resolution_indexes(
    fused: np.ndarray,
    pan: np.ndarray,
    ms: np.ndarray,
    ms_exp: np.ndarray | None,
    ratio: int,
    ms_gains: Sequence[float] | np.ndarray,
) -> dict[str, float]:
    """Full-resolution indexes: d_lambda, d_s, qnr, d_lambda_k, hqnr (quality.md B).

    ``fused`` (B, H, W) and ``pan`` (H, W) on the PAN grid, ``ms`` the original
    (B, H/ratio, W/ratio) MS, ``ms_exp`` its 23-tap interpolation to the PAN grid (None:
    computed here from ``ms``), ``ms_gains`` the sensor's MS MTF gains at Nyquist.
    Needs a power-of-two ratio (PAN_lp for D_S, hence QNR and HQNR).
    """
    r = check_pow2_ratio(ratio, "full-resolution evaluation (D_S, QNR, HQNR)")
    m = check_ms(ms, as_cube(fused, "fused").shape, r)
    if ms_exp is None:
        ms_exp = interp23(m, r)
    f, e = check_full(fused, ms_exp, BLOCK, bands_min=2)
    p = check_pan(pan, f.shape[1:], r)
    gains = check_gains(ms_gains, f.shape[0])
    dl = d_lambda_finish(*d_lambda_partial(f, e))
    ds = d_s_finish(*d_s_partial(f, p, e, pan_lowpass(p, r)))
    dk = 1.0 - q2n(mtf_filter_bands(f, gains, r), e)
    return {
        "d_lambda": dl,
        "d_s": ds,
        "qnr": (1.0 - dl) * (1.0 - ds),
        "d_lambda_k": dk,
        "hqnr": (1.0 - dk) * (1.0 - ds),
    }
