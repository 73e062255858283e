"""Wald's degradation of a whole scene, streamed tile by tile into temporary GeoTIFFs.

quality.md A.1-A.3 (Wald, Ranchin & Mangolini, PE&RS 1997; Vivone et al., IEEE GRSM
2021): GT is the original MS; MS_LR = MTF-filter GT with the sensor's gains and keep
pixels ratio*k + ratio/2; PAN_LR = the antialiased bicubic imresize of the PAN by
1/ratio. The arithmetic is ``physics.degrade`` / ``physics.mtf`` / ``physics.resample``,
applied to tiles read with enough halo that every output sample equals the whole-array
computation:

- MS_LR: the 41 x 41 MTF filter reaches ``MTF_HALF`` = 20 GT pixels, so a GT window
  grown by 20 (clipped to the GT, where ``mode='nearest'`` then replicates exactly the
  rows the whole-array filter replicates) gives the whole-array filtered values (to
  the rounding of ``physics.mtf``'s FFT convolution, ~1e-15 relative);
- PAN_LR: imresize's widened cubic reaches 2 ratio + 2 PAN pixels around each output
  centre; windows start on the ratio grid and carry ``margin`` extra GT pixels of PAN
  on each side (clipped to the PAN crop, where the half-sample symmetric border is then
  the same one the whole-array resize uses).

Geometry (the toolbox works on arrays; a georeferenced tool must say which pixels):
GT is the largest block of MS rows/columns, a multiple of ``ratio`` on each side, whose
ratio x ratio PAN blocks lie inside the PAN. Each MS pixel's PAN block starts at the PAN
pixel nearest to the MS pixel's top-left corner (ties to the lower index, so Landsat's
half-pixel PAN offset gives the PAN rows 2j, 2j+1 the toolbox would pair with MS row j).
PAN_LR gets the GT geotransform (quality.md A.3) and MS_LR the one of
``physics.degrade.degraded_ms_transform`` (A.2), so the engine's geometry-aware EXP
lands MS_LR's samples where the toolbox's EXP does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine

from errors import GeometryError
from physics.degrade import (
    decimate,
    degrade_pan,
    degraded_ms_transform,
    degraded_pan_transform,
)
from physics.mtf import MTF_HALF, mtf_filter_bands
from quality.eval_io import (
    Source,
    WindowReader,
    create_float_raster,
    write_block,
)
from raster.scene import Scene
from tiling.engine import parallel_map

Progress = Callable[[str, int, int], None]

#: Geotransform given to the degraded pair of an ungeoreferenced scene (north-up, unit
#: pixels): the engine then reads the phase from the transforms like for any scene.
UNIT_GRID = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


@dataclass(frozen=True)
class ReducedGeometry:
    """Where GT (= the MS crop) and its PAN blocks sit.

    GT is MS rows [ms_row0, ms_row0 + rows), columns [ms_col0, ms_col0 + cols); the PAN
    block of GT pixel (i, j) is PAN rows pan_row0 + ratio*i + [0, ratio), likewise for
    columns. ``rows`` and ``cols`` are multiples of ``ratio``. ``pan_offset`` is where
    GT pixel (0, 0)'s footprint really starts inside that block, in PAN pixels (0 for
    aligned grids; 0.5 for Landsat, whose MS centres fall on PAN pixel 2j + 1): PAN_LR
    is resampled with that shift so it stays co-registered with GT.
    """

    ratio: int
    ms_row0: int
    ms_col0: int
    pan_row0: int
    pan_col0: int
    rows: int
    cols: int
    transform: Affine
    crs: Any
    pan_offset: tuple[float, float] = (0.0, 0.0)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    @property
    def lr_shape(self) -> tuple[int, int]:
        return self.rows // self.ratio, self.cols // self.ratio


def _axis(
    amap: tuple[float, float], n_ms: int, n_pan: int, ratio: int
) -> tuple[int, int, int, float]:
    """(first MS index, its PAN index, usable MS count: a multiple of ratio, sub-pixel
    offset of the MS footprint inside its PAN block) for one axis."""
    a, b = amap
    centre0 = -b / a  # PAN index of MS sample 0's centre
    pan0 = math.ceil(centre0 - ratio / 2 - 1e-6)  # PAN pixel nearest the block's corner
    offset = centre0 + 0.5 - ratio / 2 - pan0  # footprint start minus block start
    lo = -(pan0 // ratio) if pan0 < 0 else 0  # first MS index whose block starts in the PAN
    hi = min(n_ms, (n_pan - pan0) // ratio)  # blocks must end inside the PAN
    count = max(hi - lo, 0)
    return lo, pan0 + ratio * lo, (count // ratio) * ratio, offset


def reduced_geometry(scene: Scene) -> ReducedGeometry:
    """The GT crop and its PAN blocks for Wald's protocol; GeometryError if impossible."""
    r = scene.ratio
    if scene.warp is not None:
        raise GeometryError(
            f"the reduced-resolution protocol degrades the MS on its own grid, but the MS "
            f"{scene.ms_paths[0]} is in another CRS than the PAN {scene.pan_path}; "
            "reproject the MS onto the PAN's CRS with gdalwarp, or use --protocol full"
        )
    (mh, mw), (ph, pw) = scene.ms_shape, scene.pan_shape
    r0, pr0, rows, dy = _axis(scene.row_map, mh, ph, r)
    c0, pc0, cols, dx = _axis(scene.col_map, mw, pw, r)
    ms_t = _ms_transform(scene)
    if ms_t is None:
        transform = UNIT_GRID
    else:
        transform = ms_t @ Affine.translation(c0, r0)
    return ReducedGeometry(r, r0, c0, pr0, pc0, rows, cols, transform, scene.crs, (dy, dx))


def _ms_transform(scene: Scene) -> Affine | None:
    """The MS geotransform when the pair is georeferenced north-up, else None."""
    import rasterio

    with rasterio.open(scene.ms_paths[0]) as ds:
        t = ds.transform
        geo = t != Affine.identity() or ds.crs is not None
    if not geo or t.b != 0 or t.d != 0 or t.e >= 0:
        return None
    return t


@dataclass(frozen=True)
class DegradedPair:
    """The degraded PAN_LR (GT grid) and MS_LR files, and the geometry they came from."""

    pan_lr: str
    ms_lr: str
    geometry: ReducedGeometry


def degrade_tile_size(tile: int, ratio: int) -> int:
    """GT side of a degradation tile: about ``tile`` PAN pixels of PAN per window."""
    t = max(64, tile // ratio)
    return ratio * -(-t // ratio)


def pan_margin(ratio: int) -> int:
    """Extra GT pixels of PAN read on each side: imresize's reach (2 ratio + 2 PAN px)."""
    return 2 + -(-4 // ratio) + 1


def degrade_scene(
    scene: Scene,
    geom: ReducedGeometry,
    gains: tuple[float, ...] | np.ndarray,
    folder: str,
    *,
    tile: int = 512,
    threads: int = 1,
    progress: Progress | None = None,
    phase: str = "degrade",
) -> DegradedPair:
    """Write PAN_LR and MS_LR of ``scene`` (float64 GeoTIFFs in ``folder``), tile by tile.

    quality.md A.2-A.3; the result equals ``physics.degrade.wald_pair`` on the GT crop
    and its PAN to rounding (~1e-15 relative: the FFT convolution of the MTF filter and
    the resize's matrix product group their sums differently on a window).
    """
    r = geom.ratio
    rows, cols = geom.shape
    g = np.asarray(gains, dtype=np.float64)
    t = degrade_tile_size(tile, r)
    m = pan_margin(r)
    pan_reader = WindowReader([Source(scene.pan_path, 1)], (geom.pan_row0, geom.pan_col0))
    ms_reader = WindowReader(
        [Source(b.path, b.index) for b in scene.bands], (geom.ms_row0, geom.ms_col0)
    )
    pan_path = os.path.join(folder, "pan_lr.tif")
    ms_path = os.path.join(folder, "ms_lr.tif")
    ms_lr_t = degraded_ms_transform(geom.transform, r)
    pan_lr_t = degraded_pan_transform(geom.transform)
    h_lr, w_lr = geom.lr_shape
    specs = [
        (g0, min(g0 + t, rows), c0, min(c0 + t, cols))
        for g0 in range(0, rows, t)
        for c0 in range(0, cols, t)
    ]
    total = rows * cols
    report = progress or (lambda ph, done, tot: None)

    def work(spec: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        g0, g1, c0, c1 = spec
        # PAN_LR: PAN window on the ratio grid, margin m GT pixels, clipped to the crop
        a0, a1 = max(g0 - m, 0), min(g1 + m, rows)
        b0, b1 = max(c0 - m, 0), min(c1 + m, cols)
        pan = pan_reader.read(r * a0, r * a1, r * b0, r * b1)[0]
        pan_lr = degrade_pan(pan, r, geom.pan_offset)[g0 - a0 : g1 - a0, c0 - b0 : c1 - b0]
        # MS_LR: GT window grown by the MTF reach, then keep rows r*k + r/2
        u0, u1 = max(g0 - MTF_HALF, 0), min(g1 + MTF_HALF, rows)
        v0, v1 = max(c0 - MTF_HALF, 0), min(c1 + MTF_HALF, cols)
        gt = ms_reader.read(u0, u1, v0, v1)
        filt = mtf_filter_bands(gt, g, r)[:, g0 - u0 : g1 - u0, c0 - v0 : c1 - v0]
        return pan_lr, decimate(filt, r)

    pan_ds = create_float_raster(pan_path, 1, rows, cols, pan_lr_t, geom.crs)
    try:
        ms_ds = create_float_raster(ms_path, scene.n_bands, h_lr, w_lr, ms_lr_t, geom.crs)
        try:
            done = [0]

            def consume(spec: tuple[int, int, int, int], res: tuple[np.ndarray, ...]) -> None:
                g0, g1, c0, c1 = spec
                write_block(pan_ds, res[0], g0, c0)
                write_block(ms_ds, res[1], g0 // r, c0 // r)
                done[0] += (g1 - g0) * (c1 - c0)
                report(phase, done[0], total)

            report(phase, 0, total)
            parallel_map(specs, work, consume, threads, max_inflight=threads + 2)
        finally:
            ms_ds.close()
    finally:
        pan_ds.close()
        pan_reader.close()
        ms_reader.close()
    return DegradedPair(pan_path, ms_path, geom)
