"""Input validation shared by every quality index.

Each check raises :class:`errors.QualityError` with a message that says what is wrong
and how to fix it, so ``pansharp evaluate`` can print it as one line. quality.md fixes
the arrays the indexes take: raw DN as float64, (bands, rows, cols), never rescaled.
"""

from __future__ import annotations

import numpy as np

from errors import QualityError

#: Side of the Q2n / UIQI blocks and of the Q sliding window (quality.md).
BLOCK = 32


def as_cube(x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` as a float64 (bands, rows, cols) cube; a 2-D array is one band."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.size == 0:
        raise QualityError(
            f"{name} must be a non-empty (bands, rows, cols) array, got shape {np.shape(x)}"
        )
    return a


def as_plane(x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` as a float64 (rows, cols) plane; a (1, rows, cols) cube is accepted."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2 or a.size == 0:
        raise QualityError(f"{name} must be a single-band (rows, cols) array, got {np.shape(x)}")
    return a


def check_finite(a: np.ndarray, name: str) -> None:
    """Reject NaN/inf: the toolbox has no masking, so one NaN would silently poison a mean."""
    if not np.isfinite(a).all():
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        raise QualityError(
            f"{name} has {bad} NaN or infinite values; fill or crop nodata before "
            "evaluating (the indexes are defined on raw DN with no mask)"
        )


def check_pair(
    fused: np.ndarray, ref: np.ndarray, names: tuple[str, str] = ("fused", "reference")
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (fused, reference) pair: same band count, same size, finite values."""
    f = as_cube(fused, names[0])
    g = as_cube(ref, names[1])
    if f.shape[0] != g.shape[0]:
        raise QualityError(
            f"{names[0]} has {f.shape[0]} bands but {names[1]} has {g.shape[0]}; "
            "compare images with the same bands in the same order"
        )
    if f.shape[1:] != g.shape[1:]:
        raise QualityError(
            f"{names[0]} is {f.shape[1]}x{f.shape[2]} pixels but {names[1]} is "
            f"{g.shape[1]}x{g.shape[2]}; both must be on the same grid (crop or resample first)"
        )
    check_finite(f, names[0])
    check_finite(g, names[1])
    return f, g


def check_min_size(rows: int, cols: int, minimum: int, what: str, hint: str = "") -> None:
    """Refuse images smaller than ``minimum`` pixels on a side (one block / window)."""
    if rows < minimum or cols < minimum:
        msg = f"{what} needs at least {minimum}x{minimum} pixels, got {rows}x{cols}"
        raise QualityError(msg + (f"; {hint}" if hint else ""))


def check_ratio(ratio: int, what: str) -> int:
    """A positive integer scale ratio (ERGAS, MTF filter)."""
    if isinstance(ratio, bool) or int(ratio) != ratio or ratio < 1:
        raise QualityError(f"{what}: ratio must be a positive integer, got {ratio!r}")
    return int(ratio)


def check_pow2_ratio(ratio: int, what: str) -> int:
    """A power-of-two ratio >= 2: the 23-tap interpolator (EXP) only exists for 2^L.

    Needed by D_S and therefore QNR and HQNR (PAN_lp = EXP(imresize(PAN, 1/ratio))).
    """
    r = check_ratio(ratio, what)
    if r < 2 or r & (r - 1):
        raise QualityError(
            f"{what} needs the 23-tap interpolator, which exists only for power-of-two "
            f"ratios (2, 4, 8 ...), got ratio {ratio}; D_S, QNR and HQNR cannot be computed "
            "for this ratio (D_lambda, D_lambda_K and every reduced-resolution index can)"
        )
    return r


def check_bit_depth(bit_depth: int) -> int:
    """Bit depth L of the sensor (PSNR peak and SSIM data range are 2^L - 1)."""
    if isinstance(bit_depth, bool) or int(bit_depth) != bit_depth or not 1 <= bit_depth <= 32:
        raise QualityError(
            f"bit depth must be an integer between 1 and 32, got {bit_depth!r}; "
            "pass the sensor's radiometric resolution (e.g. 11 for WorldView-2)"
        )
    return int(bit_depth)


def check_gains(gains: np.ndarray | list[float] | tuple[float, ...], bands: int) -> np.ndarray:
    """MTF gains at Nyquist: at least one per band, each in (0, 1)."""
    g = np.asarray(gains, dtype=np.float64).ravel()
    if g.size < bands:
        raise QualityError(
            f"{g.size} MTF gains for a {bands}-band image; pass one gain per band "
            "(e.g. Sensor.gains(n_bands))"
        )
    g = g[:bands]
    if not np.all((g > 0) & (g < 1)):
        raise QualityError(f"MTF gains at Nyquist must lie in (0, 1), got {g.tolist()}")
    return g
