"""Wald's degradation: the reduced-resolution pair every method is scored and trained on.

quality.md, section A, steps 2-3 (Wald, Ranchin & Mangolini, PE&RS 1997): the MS is
MTF-filtered with the sensor's gains and decimated at ratio*k + ratio/2; the PAN is
shrunk by an antialiased bicubic imresize (no MTF filter). Evaluation, training and
test-time adaptation all import this module, so they degrade identically.
"""

from __future__ import annotations

import numpy as np
from affine import Affine

from physics.mtf import mtf_filter_bands
from physics.resample import imresize


def decimate(img: np.ndarray, ratio: int) -> np.ndarray:
    """Keep pixels ratio*k + ratio/2 along the last two axes (the toolbox phase)."""
    s = ratio // 2
    return img[..., s::ratio, s::ratio]


def degrade_ms(ms: np.ndarray, gains: np.ndarray | list[float], ratio: int) -> np.ndarray:
    """MS_LR = decimate(MTF(GT)) for a (B, h, w) cube."""
    return decimate(mtf_filter_bands(ms, gains, ratio), ratio)


def degrade_pan(
    pan: np.ndarray, ratio: int, offset: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """PAN_LR = imresize(PAN, 1/ratio), bicubic with antialiasing.

    quality.md A.3 centres PAN_LR pixel k on the GT pixel it averages. When the MS grid
    is offset from the PAN grid by a fraction of a PAN pixel (Landsat: 7.5 m, half a PAN
    pixel), the GT pixel's footprint starts ``offset`` PAN pixels after the PAN block
    boundary, and the imresize grid is shifted by that much (0 for aligned grids, the
    toolbox's case, where this is exactly MATLAB's imresize).
    """
    return imresize(pan, 1.0 / ratio, offset)


def wald_pair(
    pan: np.ndarray, ms: np.ndarray, gains: np.ndarray | list[float], ratio: int
) -> tuple[np.ndarray, np.ndarray]:
    """Degrade a (PAN, MS) pair by ``ratio``; returns (PAN_LR, MS_LR).

    PAN and MS are cropped first to whole multiples of ``ratio`` (PAN to ratio^2) so
    the degraded PAN is exactly ``ratio`` times the degraded MS.
    """
    h, w = ms.shape[-2:]
    h, w = h - h % ratio, w - w % ratio
    ms = ms[..., :h, :w]
    pan = pan[: h * ratio, : w * ratio]
    return degrade_pan(pan, ratio), degrade_ms(ms, gains, ratio)


def degraded_ms_transform(gt_transform: Affine, ratio: int) -> Affine:
    """Geotransform of MS_LR: pixel k centred on GT pixel ratio*k + ratio/2.

    Its origin is half a GT pixel right of and below the GT origin (quality.md A.2), so
    a geometry-aware interpolator lands each sample where the toolbox's EXP does.
    """
    shift = gt_transform @ (0.5, 0.5)
    return Affine(
        gt_transform.a * ratio,
        gt_transform.b * ratio,
        shift[0],
        gt_transform.d * ratio,
        gt_transform.e * ratio,
        shift[1],
    )


def degraded_pan_transform(gt_transform: Affine) -> Affine:
    """Geotransform of PAN_LR: it shares the GT grid (quality.md A.3)."""
    return gt_transform
