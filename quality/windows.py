"""Sliding-window and block machinery shared by Q, SSIM and the block UIQIs.

Window sums are computed by binary doubling (S_2k[t] = S_k[t] + S_k[t + k]) rather than
by differences of an integral image. Both are fast (log2(32) = 5 passes per axis against
one cumsum), but the doubling sum of a window depends only on the pixels inside it and
is evaluated in the same order wherever the window lies in the array: a tile with a halo
and the whole scene give bit-identical window values, which is what lets the streaming
accumulators reproduce the whole-image numbers. It is also free of the cancellation an
integral image suffers on large scenes (differences of sums over millions of pixels),
and a constant window of a power-of-two side gets an exactly zero variance, so UIQI's
special cases (quality.md, "UIQI on a block") fire exactly when they should.
"""

from __future__ import annotations

import numpy as np


def _take(a: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    """``a[..., start:stop, ...]`` along ``axis``."""
    idx = [slice(None)] * a.ndim
    idx[axis] = slice(start, stop)
    return a[tuple(idx)]


def sliding_sum(a: np.ndarray, width: int, axis: int) -> np.ndarray:
    """Sums of ``width`` consecutive samples along ``axis`` ('valid' positions).

    Output t is sum(a[t : t + width]); the output has n - width + 1 samples.
    """
    axis = axis % a.ndim
    n = a.shape[axis]
    if width < 1 or width > n:
        raise ValueError(f"window {width} does not fit an axis of {n} samples")
    # powers[k] holds S_{2^k}, valid over n - 2^k + 1 positions
    powers = [a]
    k = 1
    while 2 * k <= width:
        prev = powers[-1]
        m = n - 2 * k + 1
        powers.append(_take(prev, axis, 0, m) + _take(prev, axis, k, k + m))
        k *= 2
    out_len = n - width + 1
    out: np.ndarray | None = None
    offset = 0
    for level in range(len(powers) - 1, -1, -1):
        size = 1 << level
        if width - offset >= size:
            part = _take(powers[level], axis, offset, offset + out_len)
            out = part.copy() if out is None else out + part
            offset += size
    assert out is not None and offset == width
    return out


def box_sum(a: np.ndarray, width: int) -> np.ndarray:
    """2-D sums over every ``width`` x ``width`` window of the last two axes ('valid')."""
    return sliding_sum(sliding_sum(a, width, -2), width, -1)


def weighted_valid(a: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """Correlation with a 1-D kernel along ``axis``, 'valid' positions, fixed tap order."""
    axis = axis % a.ndim
    m = len(weights)
    out_len = a.shape[axis] - m + 1
    out = weights[0] * _take(a, axis, 0, out_len)
    for k in range(1, m):
        out = out + weights[k] * _take(a, axis, k, k + out_len)
    return out


def gaussian_taps(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """1-D factor of MATLAB ``fspecial('gaussian', size, sigma)`` (normalised to sum 1).

    The 2-D kernel is the outer product of this with itself: exp(-(x^2 + y^2) / 2s^2)
    separates, and its normalisation is the square of the 1-D one.
    """
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def blocks(a: np.ndarray, block: int) -> np.ndarray:
    """View the whole ``block`` x ``block`` tiles of the last two axes.

    Shape (..., rows // block, cols // block, block * block); trailing partial blocks
    are left out.
    """
    h, w = a.shape[-2] // block, a.shape[-1] // block
    v = a[..., : h * block, : w * block]
    v = v.reshape(*a.shape[:-2], h, block, w, block)
    v = np.moveaxis(v, -3, -2)
    return v.reshape(*a.shape[:-2], h, w, block * block)
