"""What a model sees of one tile, and the interface of classical methods.

The tiling engine hands every method a :class:`Tile`: the PAN window and the MS already
resampled onto the PAN grid, both with a halo around the core, plus where the MS
samples sit. Methods with global coefficients follow a two-pass contract so that every
tile uses the same coefficients and the tiled result equals the whole-image result:

1. ``fit_tile(tile) -> dict`` of *additive* partial sums over the tile's core valid
   pixels (moments, cross-products, histograms); the engine adds them over all tiles;
2. ``fit_finish(totals) -> coeffs`` turns the sums into coefficients;
3. ``apply(tile, coeffs) -> (B, H, W)`` fuses the whole tile (halo included; the
   engine crops the core).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FuseContext:
    """Scene-wide facts every tile shares."""

    ratio: int
    n_bands: int
    ms_gains: tuple[float, ...]  # MTF gains at Nyquist per MS band
    pan_gain: float
    weights: tuple[float, ...]  # pseudo-PAN spectral weights
    dtype: str = "float64"  # MS data type on disk
    bit_depth: int | None = None
    max_value: float | None = None  # largest valid DN (2^bit_depth - 1), None for floats
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Tile:
    """One tile with its halo, on the PAN grid.

    ``sample_rows``/``sample_cols`` are the tile-local PAN pixel indices nearest to the
    MS sample centres (exact when the MS centres fall on PAN pixels, as for Landsat and
    for the toolbox's phase ratio*j + ratio/2): ``ms[:, rows][:, :, cols]`` gives back
    the original MS samples, and decimating a low-passed PAN there gives the degraded
    PAN the toolbox regresses on.
    """

    pan: np.ndarray  # (H, W) float64
    ms: np.ndarray  # (B, H, W) float64, MS interpolated onto the PAN grid
    valid: np.ndarray  # (H, W) bool, False for nodata and outside the scene
    core: tuple[slice, slice]  # the part of the tile this tile is responsible for
    sample_rows: np.ndarray
    sample_cols: np.ndarray
    ctx: FuseContext

    def core_valid(self) -> np.ndarray:
        """Valid mask restricted to the core (statistics never count the halo twice)."""
        m = np.zeros_like(self.valid)
        m[self.core] = self.valid[self.core]
        return m

    def samples(self, img: np.ndarray) -> np.ndarray:
        """Decimate a PAN-grid array (2-D or (B, H, W)) at the MS sample positions."""
        return img[..., self.sample_rows, :][..., self.sample_cols]

    def core_sample_mask(self) -> np.ndarray:
        """Valid mask at the MS sample positions that lie in the core."""
        return self.samples(self.core_valid())


class ClassicalMethod:
    """Base class: methods override :meth:`apply`, and the fit pair if they need global stats."""

    name: str = ""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def fit_tile(self, tile: Tile) -> dict[str, np.ndarray]:
        return {}

    def fit_finish(self, totals: dict[str, np.ndarray], ctx: FuseContext) -> Any:
        return None

    def apply(self, tile: Tile, coeffs: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError
