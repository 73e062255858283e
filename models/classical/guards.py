"""What the classical methods do where their formulas leave their domain.

Two guards, shared so that every method applies the same rule:

* **Ratios of images** (:func:`modulation`). Brovey, BT-H, SFIM, MTF-GLP-HPM, AWLP and
  PRACS multiply an MS band by a quotient of two images. The toolbox (Vivone et al.,
  IEEE GRSM 2021) writes ``x ./ (y + eps)``, which only avoids dividing by an exact
  zero: where the denominator is almost nothing, or of the other sign than the
  numerator, the quotient is anything from -1e7 to 1e7 (measured on the Landsat 7
  crops, whose dark water and shadows map the equalised PAN of the NIR/SWIR bands onto
  zero and below). Here the quotient keeps the toolbox's value, bit for bit, inside
  the range it takes where both images are what the formula assumes, non-negative
  radiances; above it the denominator is floored relative to the numerator, and a
  negative quotient (no meaning) leaves the band unmodulated.
* **Estimation area** (:func:`require_pixels`). A method whose coefficients come from
  statistics of filtered images counts only pixels whose filter footprint is valid
  (``common.eroded_core``). On a small or mostly-nodata MS that set can be empty, and
  the coefficients then fall back to zeros: the output silently equals EXP. The fit
  refuses instead, saying how large the MS must be.
"""

from __future__ import annotations

import math

import numpy as np

from errors import GeometryError
from models.base import Tile

F64 = np.float64

#: Largest HPM-type modulation kept, and the floor of a denominator relative to its
#: numerator: a quotient q = N / D above it is capped there, i.e. D is not allowed below
#: N / MAX_MODULATION. Measured on pixels whose low-pass is at least a quarter of the
#: band mean (where the toolbox's formula is in its domain): the largest P_b / P_L,b of
#: MTF-GLP-HPM is 1.9 on the Landsat 8 sample, 1.8-3.8 on Landsat 7 crops without dark
#: water and up to 5.3 next to it; above 4 were 0 of 1.2e6 pixels (Landsat 8), 0-28 of
#: 3.8e6 (11 Landsat 7 crops) and 497 of 1.2e6 on the WorldView-2 tile whose NIR
#: equalisation gain is 3.1. With q in [0, 4] (or 1) the output stays in [0, 4 max(MS)]
#: wherever the MS is non-negative.
MAX_MODULATION = 4.0


def modulation(
    num: np.ndarray,
    den: np.ndarray,
    fill: float = 1.0,
    limit: float | np.ndarray = MAX_MODULATION,
) -> np.ndarray:
    """The toolbox's ``num ./ (den + eps)`` for a modulation factor, guarded.

    q = num / den where it lies in [0, limit]; ``limit`` above; ``fill`` where it is
    negative, 0/0 or NaN.

    * q in [0, limit]: the toolbox's value (its eps only matters for an exact zero).
    * q > limit: the denominator is almost nothing *relative to the numerator*
      (|den| < |num| / limit). It is floored at |num| / limit, so q = limit. A floor
      relative to the numerator, not a fixed one: where the equalised PAN's low-pass
      crosses zero its numerator is still tens of DN (measured on Landsat 7: with a
      floor of 0.05 or 0.2 times the band mean the output still reached 2355 or 669 on
      8-bit data), and it needs no statistic, so every tile applies the same rule.
    * q < 0: the two images have opposite signs, so one of them is a negative radiance
      (an equalised PAN below zero, an EXP undershoot) and the ratio has no meaning:
      ``fill``, the value for no modulation (1: the band keeps its MS value), as for
      0/0. Clamping to 0 instead turned 0.28 % of the Landsat 7 pixels black (0 DN).

    ``limit`` may be an array broadcasting against the quotient (a bound per band).
    """
    num = np.asarray(num, dtype=F64)
    den = np.asarray(den, dtype=F64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = num / den
    undefined = ~(q >= 0)  # negative or NaN
    q = np.minimum(q, limit)
    q[undefined] = fill
    return q


# --------------------------------------------------------------------- estimation area


def count_sums(tile: Tile) -> dict[str, np.ndarray]:
    """Additive counts of the tile's core valid pixels: PAN grid (``valid_n``) and MS
    samples (``ms_valid_n``), for :func:`require_pixels`' decision and message."""
    return {
        "valid_n": np.array([float(tile.core_valid().sum())]),
        "ms_valid_n": np.array([float(tile.core_sample_mask().sum())]),
    }


def min_side(ratio: int, needed: int, pan_half: int = 0, ms_half: int = 0, lr: bool = False) -> int:
    """Smallest N such that an all-valid N x N MS leaves ``needed`` estimation pixels.

    The tile's outside counts as invalid, so a footprint of half-width ``pan_half`` PAN
    pixels (or ``ms_half`` MS pixels) removes that much from each edge. ``lr=False``: the
    set is counted on the PAN grid, (N ratio - 2 pan_half)^2 >= needed. ``lr=True``: it
    is counted at the MS sample positions; a sample whose PAN footprint must be valid
    loses ceil(pan_half / ratio) samples per edge (the worst sample phase), so
    (N - 2 max(ms_half, ceil(pan_half / ratio)))^2 >= needed.
    """
    root = math.isqrt(max(needed, 1) - 1) + 1  # ceil(sqrt(needed))
    if lr:
        return 2 * max(ms_half, -(-pan_half // ratio)) + root
    return -(-(2 * pan_half + root) // ratio)


def require_pixels(
    method: str,
    totals: dict[str, np.ndarray],
    prefix: str,
    needed: int,
    side: int,
    alternative: str = "gsa or brovey",
) -> None:
    """Refuse (``GeometryError``) when the estimation set ``prefix`` has < ``needed`` pixels.

    ``needed``: the regression's unknowns (B + 1 with an intercept, B without), or 2 for
    a covariance or a standard deviation. Fewer cannot determine the coefficients: the
    normal equations are singular and the fit would return zeros (the output would be
    EXP's). When the scene has no valid pixel at all the fit says nothing: every output
    pixel is nodata whatever the coefficients, and the caller refuses the empty scene
    in its own words. GeometryError (exit 4), because what is missing is extent: enough
    valid area, away from nodata and the edges, for the method's filters; the rasters
    themselves are readable and usable by other methods.
    """
    usable = float(np.asarray(totals.get(f"{prefix}_n", 0.0)).sum())
    if usable >= needed or float(np.asarray(totals.get("valid_n", 0.0)).sum()) == 0:
        return
    valid_ms = int(np.asarray(totals.get("ms_valid_n", 0.0)).sum())
    raise GeometryError(
        f"method {method} needs at least {side} x {side} valid MS pixels away from nodata "
        f"and the image edges to estimate its coefficients; the MS has {valid_ms} valid "
        f"pixels, which leave {int(usable)} of the {needed} estimation pixels it needs; "
        f"choose another -m such as {alternative}"
    )
