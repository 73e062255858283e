"""Resampling between the MS and PAN grids, written once.

- :func:`resample_cube`: separable resampling of a (B, h, w) cube onto arbitrary
  output positions, used by the tiling engine to put MS tiles on the PAN grid.
- :func:`interp23` : the toolbox EXP on in-memory arrays (MS pixel j -> output pixel
  ratio*j + ratio/2, quality.md "23-tap interpolation"), symmetric borders.
- :func:`imresize` : MATLAB-style antialiased bicubic resize (quality.md), used for
  PAN_LR in Wald's protocol and PAN_lp in D_S.
"""

from __future__ import annotations

import numpy as np

from physics.kernels import axis_matrix, cubic_kernel, reflect_index


def resample_cube(
    cube: np.ndarray, row_pos: np.ndarray, col_pos: np.ndarray, kernel: str
) -> np.ndarray:
    """Resample every band of ``cube`` to rows ``row_pos`` x columns ``col_pos``.

    Positions are continuous source indices (sample centre j at j). Implemented as two
    matrix products per band, ``R @ band @ C.T``, which BLAS runs multi-threaded and
    which handles any sub-pixel phase with the same code.
    """
    cube = np.asarray(cube)
    r = axis_matrix(row_pos, cube.shape[-2], kernel)
    c = axis_matrix(col_pos, cube.shape[-1], kernel).T.copy()
    dtype = np.float32 if cube.dtype == np.float32 else np.float64
    r = r.astype(dtype)
    c = c.astype(dtype)
    out = np.empty((cube.shape[0], r.shape[0], c.shape[1]), dtype=dtype)
    for b in range(cube.shape[0]):
        out[b] = r @ (cube[b].astype(dtype, copy=False) @ c)
    return out


def exp_positions(n_out: int, ratio: int, offset: float = 0.0) -> np.ndarray:
    """Source positions for the toolbox phase: output i -> (i - ratio/2 - offset) / ratio."""
    return (np.arange(n_out) - ratio / 2 - offset) / ratio


def interp23(ms: np.ndarray, ratio: int) -> np.ndarray:
    """Toolbox EXP of a (B, h, w) cube to (B, h*ratio, w*ratio), symmetric borders.

    Requires a power-of-two ratio (the 23-tap cascade is defined for 2^L).
    """
    if ratio < 2 or ratio & (ratio - 1):
        raise ValueError(f"the 23-tap interpolator needs a power-of-two ratio, got {ratio}")
    h, w = ms.shape[-2:]
    return resample_cube(
        ms.astype(np.float64),
        exp_positions(h * ratio, ratio),
        exp_positions(w * ratio, ratio),
        "exp",
    )


def imresize_matrix(n_in: int, scale: float, n_out: int, offset: float = 0.0) -> np.ndarray:
    """MATLAB imresize weights for one axis: bicubic, antialiased when shrinking.

    Output k (1-based) maps to input u = k/s + 0.5 (1 - 1/s) + offset; when s < 1 the
    Keys kernel is widened by 1/s and scaled by s; weights normalised to sum 1;
    half-sample symmetric borders. ``offset`` (input pixels) shifts the output grid:
    0 is MATLAB; it is non-zero only where the MS grid is offset from the PAN grid by a
    fraction of a PAN pixel (Landsat), so each output pixel stays centred on its MS pixel.
    """
    k = np.arange(1, n_out + 1, dtype=np.float64)
    u = k / scale + 0.5 * (1 - 1 / scale) + offset
    width = 4.0 / scale if scale < 1 else 4.0
    left = np.floor(u - width / 2)
    p = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(p)[None, :]  # 1-based input indices
    if scale < 1:
        w = scale * cubic_kernel(scale * (u[:, None] - idx))
    else:
        w = cubic_kernel(u[:, None] - idx)
    w /= w.sum(axis=1, keepdims=True)
    cols = reflect_index(idx.astype(np.int64) - 1, n_in)
    mat = np.zeros((n_out, n_in))
    np.add.at(mat, (np.repeat(np.arange(n_out), p), cols.ravel()), w.ravel())
    return mat


_imresize_matrix = imresize_matrix  # the name the classical methods import


def imresize(img: np.ndarray, scale: float, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """MATLAB ``imresize(img, scale)`` (bicubic, antialiasing) of a 2-D array or (B, H, W)
    cube; ``offset`` = (rows, cols) shift of the output grid in input pixels."""
    arr = np.asarray(img, dtype=np.float64)
    h, w = arr.shape[-2:]
    ho, wo = int(np.ceil(h * scale)), int(np.ceil(w * scale))
    r = imresize_matrix(h, scale, ho, offset[0])
    c = imresize_matrix(w, scale, wo, offset[1]).T
    if arr.ndim == 2:
        return r @ arr @ c
    return np.stack([r @ b @ c for b in arr])
