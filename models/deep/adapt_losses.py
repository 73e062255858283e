"""Losses without a reference, at full resolution: what test-time adaptation minimises.

Both compare the fused image with the inputs it came from, through the sensor physics
(:mod:`physics.torch_ops`), as the Z-PNN family defines them (Ciotola et al., IEEE TGRS
2022; facts in ``../shared/papers/related.md``):

- spectral consistency: the fused bands filtered with the sensor's MTF and decimated at
  the MS sample positions must give the MS back,
  ``L_spec = mean | decimate_at(MTF(F)) - MS |`` (L1, valid samples only);
- spatial consistency: each fused band must correlate locally with the PAN,
  ``X_b = 1 - rho(F_b, P)`` over windows of half-width ``ceil(ratio / 2)``, counted only
  where X_b exceeds ``1 - rho(P_low, MS_up_b)``, the correlation the MS itself has with the
  MTF-low-passed PAN over a wider window (half-width 8): where the bands are not
  correlated with the PAN at all (water, some vegetation in the blue), nothing is forced.
  ``L_struct = mean_b mean_pixels( X_b [X_b > T_b] )``.

``L = L_spec + beta * L_struct`` with ``beta`` per sensor family
(:func:`structural_weight`: 0.36 for WorldView-2/3, 0.25 for GeoEye-1, Z-PNN's values;
0.3 elsewhere).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from physics.torch_ops import decimate_at, mtf_filter

Tensor = torch.Tensor

THRESHOLD_HALF = 8  # half-width of the windows of the MS-PAN correlation threshold
EPS = 1e-10

#: Z-PNN's structural weight beta per sensor family; DEFAULT_BETA for the others
BETA = {"worldview2": 0.36, "worldview3": 0.36, "geoeye1": 0.25}
DEFAULT_BETA = 0.3


def structural_weight(sensor: str) -> float:
    """beta of ``L_spec + beta L_struct`` for a sensor preset name."""
    return BETA.get(sensor, DEFAULT_BETA)


def local_correlation(a: Tensor, b: Tensor, half: int) -> Tensor:
    """Pearson correlation of ``a`` and ``b`` (N, C, H, W; ``b`` may have C = 1) over every
    (2 half + 1)^2 window inside the image: (N, C, H - 2 half, W - 2 half), in [-1, 1]."""
    k = 2 * half + 1

    def mean(x: Tensor) -> Tensor:
        return F.avg_pool2d(x, k, stride=1)

    b = b.expand_as(a)
    ma, mb = mean(a), mean(b)
    cov = mean(a * b) - ma * mb
    va = (mean(a * a) - ma * ma).clamp(min=0)
    vb = (mean(b * b) - mb * mb).clamp(min=0)
    return (cov / torch.sqrt(va * vb + EPS)).clamp(-1.0, 1.0)


def spectral_loss(
    fused: Tensor,
    ms: Tensor,
    gains: Sequence[float],
    ratio: int,
    rows: Sequence[int],
    cols: Sequence[int],
    valid: Tensor | None = None,
) -> Tensor:
    """L1 between the fused bands, MTF-filtered and decimated at the MS samples (patch
    rows ``rows``, columns ``cols``), and the MS samples ``ms`` (N, B, len(rows),
    len(cols)); ``valid`` (same shape, bool) keeps only valid samples."""
    low = decimate_at(mtf_filter(fused, gains, ratio), rows, cols)
    err = (low - ms).abs()
    if valid is None:
        return err.mean()
    w = valid.to(err.dtype)
    return (err * w).sum() / w.sum().clamp(min=1)


def structural_loss(
    fused: Tensor, pan: Tensor, ms_up: Tensor, gains: Sequence[float], ratio: int
) -> Tensor:
    """Z-PNN's thresholded correlation loss (module docstring); patches larger than
    2 * THRESHOLD_HALF + 1 pixels."""
    half = math.ceil(ratio / 2)
    x = 1.0 - local_correlation(fused, pan, half)
    with torch.no_grad():
        pan_low = mtf_filter(pan.expand_as(ms_up), gains, ratio)
        thr = 1.0 - local_correlation(pan_low, ms_up, THRESHOLD_HALF)
        cut = THRESHOLD_HALF - half  # both maps on the same pixels
        x_in = x[..., cut : x.shape[-2] - cut, cut : x.shape[-1] - cut]
        keep = (x_in > thr).to(x.dtype)
    x = x[..., cut : x.shape[-2] - cut, cut : x.shape[-1] - cut]
    return (x * keep).mean()


def adaptation_loss(
    fused: Tensor,
    pan: Tensor,
    ms_up: Tensor,
    ms: Tensor,
    gains: Sequence[float],
    ratio: int,
    rows: Sequence[int],
    cols: Sequence[int],
    beta: float,
) -> tuple[Tensor, dict[str, float]]:
    """``L_spec + beta L_struct`` and both terms (for the progress bar and the card)."""
    spec = spectral_loss(fused, ms, gains, ratio, rows, cols)
    struct = structural_loss(fused, pan, ms_up, gains, ratio)
    total = spec + beta * struct
    return total, {"spectral": float(spec.detach()), "structural": float(struct.detach())}
