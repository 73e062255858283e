"""Weighted Brovey transform, bit-compatible with GDAL's pansharpening.

F_b = MS_b * P / I with I = sum_b w_b MS_b (the pseudo-PAN), and F_b = 0 where I = 0,
as GDAL's ``GDALPansharpenOperation::WeightedBrovey`` does (gdal_pansharpen ``-w``).
GDAL resamples integer MS bands into the MS data type before fusing, so the resampled
MS is rounded and clipped to that type's range here too (measured: without it 0.3 %
of pixels differ from gdal_pansharpen by 2 DN or more; with it, under 0.01 %).

With non-negative bands and weights, I >= w_b MS_b, so F_b stays in [0, P / w_b] and
nothing needs guarding (unsigned data: always), whatever P / I is. Where a band is
negative (signed or float data, an undershoot of the resampling kernel) I can be almost
zero while MS_b is not, and the formula explodes; on those pixels only, P / I follows
the rule every ratio of images follows (:func:`models.classical.guards.modulation`:
kept within [0, MAX_MODULATION], floored above, 1 where negative), so |F_b| <= 4 |MS_b|.
GDAL's pixels, those without a negative band, are untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import ClassicalMethod, Tile
from models.classical.guards import modulation
from models.classical.method import register_classical
from models.registry import ModelInfo


def pseudo_pan(ms: np.ndarray, weights: tuple[float, ...]) -> np.ndarray:
    """I = sum_b w_b MS_b over the band axis of a (B, H, W) cube."""
    return np.tensordot(np.asarray(weights, dtype=ms.dtype), ms, axes=1)


@register_classical(
    ModelInfo(
        name="brovey",
        title="Brovey (GDAL-compatible weighted)",
        family="cs",
        reference="Gillespie et al., RSE 1987; GDAL gdal_pansharpen",
        halo=lambda ratio: 0,
    )
)
class Brovey(ClassicalMethod):
    name = "brovey"

    def apply(self, tile: Tile, coeffs: Any) -> np.ndarray:
        # one new tile-sized buffer, worked on in place below (not five); the rounding
        # makes it when there is one, sparing a copy pass (0.1 s of CPU at 8000^2)
        dt = np.dtype(tile.ctx.dtype)
        if dt.kind in "iu":
            info = np.iinfo(dt)
            ms = np.rint(tile.ms)
            np.clip(ms, info.min, info.max, out=ms)
        else:
            ms = tile.ms.copy()
        factor = pseudo_pan(ms, tile.ctx.weights)
        guarded = None if dt.kind == "u" else _negative_band_pixels(ms, factor, tile)
        nonzero = factor != 0
        np.divide(tile.pan, factor, out=factor, where=nonzero)
        factor[~nonzero] = 0.0
        ms *= factor
        if guarded is not None:
            ms[:, guarded[0], guarded[1]] = guarded[2]
        return ms


def _negative_band_pixels(
    ms: np.ndarray, intensity: np.ndarray, tile: Tile
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Rows, columns and guarded (B, n) outputs MS_b modulation(P, I) of the pixels with
    a negative band; None if there is none."""
    neg = (ms < 0).any(axis=0)
    if not neg.any():
        return None
    rows, cols = np.nonzero(neg)
    factor = modulation(np.asarray(tile.pan, dtype=np.float64)[rows, cols], intensity[rows, cols])
    return rows, cols, ms[:, rows, cols] * factor[None]
