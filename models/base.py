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
    # Where each tile-local PAN row/column sits in the grid of the decimated samples
    # (0 = the tile's first sample, 1 = the next ...) and the tile-local position of the
    # first pixel of a ratio x ratio block of the scene-wide block grid; both derived
    # from scene coordinates (:func:`sample_grid`), so every tile agrees with the whole
    # image even when the true ratio is 4.0002. None: the toolbox phase of a tile whose
    # samples are exactly ``ratio`` apart (``sample_rows[0] + ratio * n``).
    lr_rows: np.ndarray | None = None
    lr_cols: np.ndarray | None = None
    block_phase: tuple[int, int] | None = None

    def lr_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Continuous positions of the tile's PAN rows and columns among its samples."""
        ratio = self.ctx.ratio
        h, w = self.pan.shape
        rows = self.lr_rows
        cols = self.lr_cols
        if rows is None:
            rows = (np.arange(h) - float(self.sample_rows[0])) / ratio
        if cols is None:
            cols = (np.arange(w) - float(self.sample_cols[0])) / ratio
        return rows, cols

    def block_offsets(self) -> tuple[int, int]:
        """Tile-local start of the scene's ratio x ratio block grid (``imresize`` blocks,
        whose centre is half a PAN pixel before each sample), in [0, ratio)."""
        if self.block_phase is not None:
            return self.block_phase
        ratio = self.ctx.ratio
        return (
            int(self.sample_rows[0] - ratio // 2) % ratio,
            int(self.sample_cols[0] - ratio // 2) % ratio,
        )

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
