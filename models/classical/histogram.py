"""Fixed-bin histograms: additive partial sums for global percentiles.

A percentile is not an additive statistic, but a histogram over bins fixed in advance
is: each tile counts its core valid pixels into the same bins, the engine adds the
counts, and order statistics are read from the total (BT-H's haze, Lolli et al., IEEE
GRSL 2017; MATLAB ``prctile`` semantics). Integer data get one bin per DN (exact).
"""

from __future__ import annotations

import numpy as np

from models.base import FuseContext

F64 = np.float64

FLOAT_HIST_BITS = 16  # float data: bins = top 16 bits of the float32 pattern (~0.8 %)


def hist_bins(ctx: FuseContext) -> int:
    """Number of fixed histogram bins: one per DN for integer data, 2^16 for floats."""
    if ctx.max_value is not None:
        return int(round(ctx.max_value)) + 1
    return 1 << FLOAT_HIST_BITS


def _float_keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving unsigned key of float32 values (sign-flipped bit pattern)."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    neg = (bits & np.uint32(0x80000000)) != 0
    return np.where(neg, ~bits, bits | np.uint32(0x80000000))


def histogram(values: np.ndarray, ctx: FuseContext) -> np.ndarray:
    """Fixed-bin histogram (int64) of ``values``; identical bins on every tile.

    Integer data (``ctx.max_value`` set): one bin per DN 0..max_value, so order
    statistics are exact. Float data: bins are the top 16 bits of the order-preserving
    float32 key, a monotone binning of the whole real line with ~2^-7 relative width.
    """
    n = hist_bins(ctx)
    v = np.asarray(values, dtype=F64).ravel()
    if ctx.max_value is not None:
        idx = np.clip(np.rint(v), 0, ctx.max_value).astype(np.int64)
    else:
        idx = (_float_keys(v) >> np.uint32(32 - FLOAT_HIST_BITS)).astype(np.int64)
    return np.bincount(idx, minlength=n).astype(np.int64)


def _bin_value(b: int, ctx: FuseContext) -> float:
    """Representative value of bin ``b`` (the DN itself, or the float bin's middle)."""
    if ctx.max_value is not None:
        return float(b)
    key = np.uint32((b << (32 - FLOAT_HIST_BITS)) | (1 << (31 - FLOAT_HIST_BITS)))
    bits = key & np.uint32(0x7FFFFFFF) if key & np.uint32(0x80000000) else ~key
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


def order_statistic(counts: np.ndarray, k: int, ctx: FuseContext) -> float:
    """k-th smallest value (1-based) from a histogram."""
    cum = np.cumsum(counts)
    return _bin_value(int(np.searchsorted(cum, k, side="left")), ctx)


def percentile(counts: np.ndarray, p: float, ctx: FuseContext) -> float:
    """MATLAB ``prctile(x, p)`` from a histogram.

    Sorted value i (1-based) sits at percentile 100 (i - 0.5) / n; p is linearly
    interpolated between the two neighbouring order statistics and clamped to the
    extremes (numpy's ``method="hazen"``). Exact for integer data.
    """
    n = int(np.asarray(counts).sum())
    if n == 0:
        return 0.0
    r = n * p / 100.0 + 0.5
    if r <= 1:
        return order_statistic(counts, 1, ctx)
    if r >= n:
        return order_statistic(counts, n, ctx)
    lo = int(np.floor(r))
    x0 = order_statistic(counts, lo, ctx)
    x1 = order_statistic(counts, lo + 1, ctx)
    return x0 + (r - lo) * (x1 - x0)


def minimum(counts: np.ndarray, ctx: FuseContext) -> float:
    """Smallest value recorded in a histogram (0 when empty)."""
    nz = np.flatnonzero(counts)
    return _bin_value(int(nz[0]), ctx) if nz.size else 0.0
