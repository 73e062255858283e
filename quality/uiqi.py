"""UIQI (Wang & Bovik, IEEE SPL 2002) on blocks, and the Q_avg index built on it.

quality.md, "UIQI on a block": Q = 4 s_xy m_x m_y / ((s_x^2 + s_y^2)(m_x^2 + m_y^2));
if both variances are zero but the means are not, 2 m_x m_y / (m_x^2 + m_y^2); if the
whole denominator is zero, 1 (the toolbox's ``img_qi``). The same formula serves:

- Q_avg (reduced resolution, quality.md A.6 "Q"): every 32 x 32 window sliding by one
  pixel, 'valid' positions, averaged per band, then over bands;
- the block UIQIs of D_lambda and D_S (full resolution, quality.md B): non-overlapping
  32 x 32 blocks.
"""

from __future__ import annotations

import numpy as np

from errors import QualityError
from quality.checks import BLOCK, check_min_size, check_pair
from quality.windows import blocks, box_sum


def uiqi_formula(
    cov: np.ndarray, var_x: np.ndarray, var_y: np.ndarray, mx: np.ndarray, my: np.ndarray
) -> np.ndarray:
    """UIQI from block moments, with quality.md's special cases.

    The moments may be sums instead of means (all terms scale alike and cancel). Where
    one variance is exactly zero the covariance is exactly zero too, so a flat block
    against a textured one scores 0 and not rounding noise.
    """
    cov = np.where((var_x == 0) | (var_y == 0), 0.0, cov)
    vsum = var_x + var_y
    msum = mx * mx + my * my
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        general = (2.0 * cov / vsum) * (2.0 * mx * my / msum)
        flat = 2.0 * mx * my / msum
    return np.where(
        (vsum != 0) & (msum != 0), general, np.where((vsum == 0) & (msum != 0), flat, 1.0)
    )


def _block_moments(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Means, variances and covariance over the last axis (two-pass, centred).

    A block whose values are all equal gets an exactly zero variance (max == min),
    whatever the rounding of its mean.
    """
    mx = x.mean(axis=-1)
    my = y.mean(axis=-1)
    dx = x - mx[..., None]
    dy = y - my[..., None]
    vx = np.where(x.max(axis=-1) == x.min(axis=-1), 0.0, (dx * dx).mean(axis=-1))
    vy = np.where(y.max(axis=-1) == y.min(axis=-1), 0.0, (dy * dy).mean(axis=-1))
    cov = (dx * dy).mean(axis=-1)
    return cov, vx, vy, mx, my


def uiqi(x: np.ndarray, y: np.ndarray) -> float:
    """UIQI of two equally sized blocks (any shape), quality.md "UIQI on a block"."""
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise QualityError(f"UIQI needs two non-empty blocks of one size, got {a.size}, {b.size}")
    return float(uiqi_formula(*_block_moments(a, b)))


def block_uiqi_map(x: np.ndarray, y: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """UIQI of every whole ``block`` x ``block`` block of two (..., H, W) arrays.

    Blocks start at (0, 0); partial blocks at the bottom/right are left out (the toolbox
    refuses sizes that are not multiples of the block; see ``full_resolution``).
    """
    return uiqi_formula(*_block_moments(blocks(x, block), blocks(y, block)))


def q_window_map(x: np.ndarray, y: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """UIQI of every ``block`` x ``block`` window sliding by one ('valid'), as ``img_qi``.

    Uses window sums S (doubling sums, see ``windows``): variance ~ N S_xx - S_x^2,
    covariance ~ N S_xy - S_x S_y, means ~ S_x; N cancels in the ratio.
    """
    n = float(block * block)
    sx, sy = box_sum(x, block), box_sum(y, block)
    sxx, syy, sxy = box_sum(x * x, block), box_sum(y * y, block), box_sum(x * y, block)
    return uiqi_formula(n * sxy - sx * sy, n * sxx - sx * sx, n * syy - sy * sy, sx, sy)


def q_avg_partial(fused: np.ndarray, gt: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, int]:
    """Per-band sums of the sliding-window UIQI over the windows lying inside the arrays.

    Returns (sums of shape (B,), number of windows per band).
    """
    sums = np.array([q_window_map(f, g, block).sum() for f, g in zip(fused, gt, strict=True)])
    count = (fused.shape[1] - block + 1) * (fused.shape[2] - block + 1)
    return sums, count


def q_avg_finish(sums: np.ndarray, count: int) -> float:
    """Q_avg = mean over bands of the per-band window average."""
    return float(np.mean(sums / count))


def q_avg(fused: np.ndarray, gt: np.ndarray, block: int = BLOCK) -> float:
    """Q_avg (quality.md A.6 "Q"; toolbox ``Q.m`` / ``img_qi`` with block 32).

    ``fused`` and ``gt`` are (B, H, W) raw DN; the border cut is the caller's (see
    ``reduced_resolution_indexes``). Ideal value 1.
    """
    f, g = check_pair(fused, gt, ("fused", "gt"))
    check_min_size(f.shape[1], f.shape[2], block, "Q_avg (one sliding window)")
    return q_avg_finish(*q_avg_partial(f, g, block))
