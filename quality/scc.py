"""SCC, the spatial correlation coefficient (quality.md A.6 "SCC"; toolbox ``SCC.m``).

Per band, one more pixel is dropped on every side of the evaluated area; on what is
left (region R) the Sobel gradient magnitude sqrt(Gx^2 + Gy^2) is taken (3 x 3 kernel
[1 2 1; 0 0 0; -1 -2 -1] and its transpose, correlation, zero padding outside R,
'same' size, as MATLAB ``imfilter``); SCC = sum(Gf Gg) / sqrt(sum Gf^2 sum Gg^2),
summed jointly over pixels and bands, no mean removal. Ideal 1.
"""

from __future__ import annotations

import numpy as np

from errors import QualityError
from quality.checks import check_min_size, check_pair


def sobel_magnitude(p: np.ndarray) -> np.ndarray:
    """Gradient magnitude at the interior pixels of (..., h, w) ``p`` -> (..., h-2, w-2).

    ``p`` carries a one-pixel frame around the pixels of interest (zeros where the frame
    lies outside R).
    """
    top, bot = p[..., :-2, :], p[..., 2:, :]
    gy = (top[..., :-2] + 2 * top[..., 1:-1] + top[..., 2:]) - (
        bot[..., :-2] + 2 * bot[..., 1:-1] + bot[..., 2:]
    )
    left, right = p[..., :, :-2], p[..., :, 2:]
    gx = (left[..., :-2, :] + 2 * left[..., 1:-1, :] + left[..., 2:, :]) - (
        right[..., :-2, :] + 2 * right[..., 1:-1, :] + right[..., 2:, :]
    )
    return np.sqrt(gx * gx + gy * gy)


def scc_partial(
    fused: np.ndarray, gt: np.ndarray, keep: tuple[bool, bool, bool, bool] = (False,) * 4
) -> np.ndarray:
    """Sums (Gf Gg, Gf^2, Gg^2) over the interior pixels of framed (B, h, w) arrays.

    ``keep`` = (top, bottom, left, right): whether that frame line holds real pixels of
    R (a tile's halo) or lies outside R and is zero padding (then it is zeroed here).
    """
    f, g = fused.copy(), gt.copy()
    for arr in (f, g):
        if not keep[0]:
            arr[:, 0, :] = 0.0
        if not keep[1]:
            arr[:, -1, :] = 0.0
        if not keep[2]:
            arr[:, :, 0] = 0.0
        if not keep[3]:
            arr[:, :, -1] = 0.0
    gf, gg = sobel_magnitude(f), sobel_magnitude(g)
    return np.array([np.sum(gf * gg), np.sum(gf * gf), np.sum(gg * gg)])


def scc_finish(sums: np.ndarray) -> float:
    """SCC from the three sums; undefined when one image has no gradient at all."""
    cross, ff, gg = sums
    if ff == 0 or gg == 0:
        which = "fused" if ff == 0 else "reference"
        raise QualityError(
            f"SCC is undefined: every Sobel gradient of the {which} image is zero "
            "(an all-zero / nodata area); evaluate an area with valid pixels"
        )
    return float(cross / np.sqrt(ff) / np.sqrt(gg))


def scc(fused: np.ndarray, gt: np.ndarray) -> float:
    """SCC of (B, H, W) ``fused`` against ``gt`` (the outer ring of pixels is dropped)."""
    f, g = check_pair(fused, gt, ("fused", "gt"))
    check_min_size(f.shape[1], f.shape[2], 3, "SCC")
    return scc_finish(scc_partial(f, g))
