"""The physics operators in torch: differentiable twins of the numpy ones, for training.

Training and test-time adaptation need the same MTF filter, decimation, 23-tap EXP and
Wald degradation as the classical methods and the evaluation (quality.md, "Building
blocks" and section A; the toolbox of Vivone et al., IEEE GRSM 2021), but with gradients
flowing back to the input and on whatever device the network runs. Rather than
re-deriving the kernels, every operator here takes its taps or its resampling matrices
from the numpy modules (:func:`physics.mtf.mtf_kernel`, :func:`physics.kernels.axis_matrix`,
:func:`physics.resample.imresize_matrix`) and only applies them in torch, with the same
border rule, so the two cannot drift apart.

Conventions: images are (..., B, H, W) tensors (typically (N, B, H, W)), float32 or
float64; the result has the input's dtype and device. Constants (taps, matrices) are
built in float64 by numpy and cast to the input's dtype, as
:func:`physics.resample.resample_cube` does for float32 cubes.

Importing this module imports torch; ``import physics`` and the numpy modules never do
(the CLI's start-up must not pay for torch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from physics.kernels import axis_matrix
from physics.mtf import MTF_HALF, mtf_kernel
from physics.resample import exp_positions, imresize_matrix

Tensor = torch.Tensor


def _check_float(x: Tensor, what: str) -> None:
    """Gradients and the float tolerances need a floating tensor; refuse ints early."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what}: expected a float32/float64 tensor, got {x.dtype}")


def _const(a: np.ndarray, like: Tensor) -> Tensor:
    """A numpy constant as a tensor with ``like``'s dtype and device (a copy, no grad)."""
    return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64)).to(
        device=like.device, dtype=like.dtype
    )


def mtf_weights(
    gains: Sequence[float] | np.ndarray, n_bands: int, ratio: int, like: Tensor
) -> Tensor:
    """(B, 1, 41, 41) depthwise conv weight: band b's :func:`physics.mtf.mtf_kernel`.

    The first ``n_bands`` entries of ``gains`` are used (quality.md: an 8-band sensor
    table for a 4-band image uses its first B entries), as in ``mtf_filter_bands``.
    """
    g = np.asarray(gains, dtype=np.float64).ravel()
    if g.size < n_bands:
        raise ValueError(f"{g.size} MTF gains for {n_bands} bands")
    taps = np.stack([mtf_kernel(float(v), int(ratio)) for v in g[:n_bands]])
    return _const(taps[:, None], like)


def mtf_filter(x: Tensor, gains: Sequence[float] | np.ndarray, ratio: int) -> Tensor:
    """Filter each band of a (..., B, H, W) tensor with its sensor MTF, differentiably.

    out_b = h_b (star) pad_edge(x_b, 20): 2-D *correlation* with the 41x41 kernel h_b
    whose frequency response is a Gaussian with gain GNyq_b at the MS Nyquist frequency
    1/(2 ratio) (quality.md "MTF filter per band"; Aiazzi et al., PE&RS 2006), 'same'
    size, replicated borders, exactly :func:`physics.mtf.mtf_filter_bands`.
    ``conv2d`` computes a correlation, so the kernel is used unflipped; ``groups=B``
    gives every band its own kernel. Direct (not FFT) convolution: gradients are
    simple and on a GPU the 1681 taps a pixel are cheap.
    """
    _check_float(x, "mtf_filter")
    if x.dim() < 3:
        raise ValueError(f"mtf_filter needs (..., B, H, W), got shape {tuple(x.shape)}")
    lead, (b, h, w) = x.shape[:-3], x.shape[-3:]
    weight = mtf_weights(gains, b, ratio, x)
    flat = x.reshape(-1, b, h, w)
    p = MTF_HALF
    padded = F.pad(flat, (p, p, p, p), mode="replicate")
    out = F.conv2d(padded, weight, groups=b)
    return out.reshape(*lead, b, h, w)


def decimate(x: Tensor, ratio: int) -> Tensor:
    """Keep pixels ratio*k + ratio/2 along the last two axes: :func:`physics.degrade.decimate`
    (quality.md A.2, the toolbox's phase)."""
    s = ratio // 2
    return x[..., s::ratio, s::ratio]


def decimate_at(
    x: Tensor, rows: Sequence[int] | np.ndarray, cols: Sequence[int] | np.ndarray
) -> Tensor:
    """Keep the PAN-grid pixels at the MS sample positions, ``x[..., rows, :][..., cols]``.

    ``rows``/``cols`` are tile-local indices (``Tile.sample_rows``/``sample_cols``, from
    :func:`tiling.reader.sample_grid`): the toolbox's ``imresize(.., 1/ratio,
    'nearest')`` decimation, which the MTF-GLP low-pass and the degraded PAN use.
    ``index_select`` scatters the gradient back to the kept pixels.
    """
    r = torch.tensor(np.asarray(rows, dtype=np.int64), device=x.device)
    c = torch.tensor(np.asarray(cols, dtype=np.int64), device=x.device)
    return x.index_select(-2, r).index_select(-1, c)


def resample(
    x: Tensor,
    row_pos: Sequence[float] | np.ndarray,
    col_pos: Sequence[float] | np.ndarray,
    kernel: str = "exp",
) -> Tensor:
    """Resample (..., h, w) onto rows ``row_pos`` x columns ``col_pos``, differentiably.

    out = R (x C^T) with R = axis_matrix(row_pos, h, kernel), C = axis_matrix(col_pos,
    w, kernel) (:mod:`physics.kernels`): positions are continuous source indices
    (sample j's centre at j); for ``exp`` (the 23-tap limit kernel, Aiazzi et al. 2002)
    taps past the edge fold back symmetrically and rows are renormalised to sum 1,
    exactly as :func:`physics.resample.resample_cube` (same product order, too). The
    matrices are the numpy ones, so the two cannot disagree on the kernel or the border.
    """
    _check_float(x, "resample")
    if x.dim() < 2:
        raise ValueError(f"resample needs (..., h, w), got shape {tuple(x.shape)}")
    r = _const(axis_matrix(np.asarray(row_pos, dtype=np.float64), x.shape[-2], kernel), x)
    c = _const(axis_matrix(np.asarray(col_pos, dtype=np.float64), x.shape[-1], kernel).T, x)
    return torch.matmul(r, torch.matmul(x, c))


def interp23(x: Tensor, ratio: int) -> Tensor:
    """Toolbox EXP of (..., h, w) to (..., h*ratio, w*ratio): MS pixel j lands on output
    pixel ratio*j + ratio/2, symmetric borders (quality.md "23-tap interpolation"),
    the twin of :func:`physics.resample.interp23` (power-of-two ratios only)."""
    if ratio < 2 or ratio & (ratio - 1):
        raise ValueError(f"the 23-tap interpolator needs a power-of-two ratio, got {ratio}")
    h, w = x.shape[-2:]
    return resample(x, exp_positions(h * ratio, ratio), exp_positions(w * ratio, ratio), "exp")


def glp_lowpass(
    x: Tensor,
    gains: Sequence[float] | np.ndarray,
    ratio: int,
    sample_rows: Sequence[int] | np.ndarray,
    sample_cols: Sequence[int] | np.ndarray,
    row_pos: Sequence[float] | np.ndarray,
    col_pos: Sequence[float] | np.ndarray,
) -> Tensor:
    """MTF-GLP low-pass: MTF filter, decimation at the samples, 23-tap EXP back.

    ``interp23tap(imresize(imfilter(P, h_b), 1/ratio, 'nearest'), ratio)`` of the
    toolbox, as ``models.classical.common.glp_lowpass`` computes it on a tile: pass the
    tile's ``sample_rows``/``sample_cols`` and its ``lr_positions()``.
    """
    low = decimate_at(mtf_filter(x, gains, ratio), sample_rows, sample_cols)
    return resample(low, row_pos, col_pos, "exp")


def degrade_ms(x: Tensor, gains: Sequence[float] | np.ndarray, ratio: int) -> Tensor:
    """Wald's MS_LR = decimate(MTF(GT)) (quality.md A.2; Wald, Ranchin & Mangolini,
    PE&RS 1997): the twin of :func:`physics.degrade.degrade_ms`."""
    return decimate(mtf_filter(x, gains, ratio), ratio)


def imresize(x: Tensor, scale: float, offset: tuple[float, float] = (0.0, 0.0)) -> Tensor:
    """MATLAB ``imresize`` (bicubic, antialiased when shrinking, half-sample symmetric
    borders) of (..., H, W): R x C^T with the matrices of
    :func:`physics.resample.imresize_matrix`, the twin of :func:`physics.resample.imresize`."""
    _check_float(x, "imresize")
    h, w = x.shape[-2:]
    ho, wo = int(np.ceil(h * scale)), int(np.ceil(w * scale))
    r = _const(imresize_matrix(h, scale, ho, offset[0]), x)
    c = _const(imresize_matrix(w, scale, wo, offset[1]).T, x)
    return torch.matmul(torch.matmul(r, x), c)


def degrade_pan(x: Tensor, ratio: int, offset: tuple[float, float] = (0.0, 0.0)) -> Tensor:
    """Wald's PAN_LR = imresize(PAN, 1/ratio), no MTF filter (quality.md A.3): the twin of
    :func:`physics.degrade.degrade_pan`, ``offset`` as there (Landsat's half pixel)."""
    return imresize(x, 1.0 / ratio, offset)
