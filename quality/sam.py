"""SAM, the spectral angle mapper (quality.md A.6 "SAM"; toolbox ``SAM.m``).

Per pixel, the angle arccos(<g, f> / (|g| |f|)) between the reference and fused
spectra; pixels with |g| |f| = 0 are dropped; arithmetic mean over the remaining
pixels, in degrees. Ideal 0.
"""

from __future__ import annotations

import numpy as np

from errors import QualityError
from quality.checks import check_pair


def sam_partial(fused: np.ndarray, gt: np.ndarray) -> tuple[float, int]:
    """(sum of angles in radians, number of pixels with |g||f| > 0) over the arrays."""
    dot = np.einsum("bij,bij->ij", gt, fused)
    norm = np.sqrt(np.einsum("bij,bij->ij", gt, gt) * np.einsum("bij,bij->ij", fused, fused))
    valid = norm > 0
    # arccos of a ratio that rounding pushed past +-1 is the toolbox's real(acos(.))
    cosine = np.clip(dot[valid] / norm[valid], -1.0, 1.0)
    return float(np.arccos(cosine).sum()), int(valid.sum())


def sam_finish(angle_sum: float, count: int) -> float:
    """Mean angle in degrees; undefined when every pixel has a zero spectrum."""
    if count == 0:
        raise QualityError(
            "SAM is undefined: every pixel has an all-zero spectrum in the fused or the "
            "reference image (nodata?); evaluate an area with valid pixels"
        )
    return float(np.degrees(angle_sum / count))


def sam(fused: np.ndarray, gt: np.ndarray) -> float:
    """SAM in degrees of (B, H, W) ``fused`` against ``gt``."""
    f, g = check_pair(fused, gt, ("fused", "gt"))
    return sam_finish(*sam_partial(f, g))
