"""The scoring passes: a fused image streamed tile by tile into the protocol's accumulators.

No scene is held whole (quality.md: every index accumulates over the tile stream):

- reduced resolution (quality.md A.5-A.6): tiles of the fused image and the GT, each
  core with the halo :class:`quality.ReducedAccumulator` needs (1 line before, 31
  after), are read in worker threads and added in tile order;
- full resolution (quality.md B): tiles of F, PAN and EXP(MS) (the engine's
  ``TileReader``, resampling ``exp``, float64) with cores on the 32-pixel block grid and
  the ``pan_lowpass_halo`` feed :class:`quality.FullAccumulator`.

The indexes have no mask: a tile with nodata or NaN is refused with the window it is in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from errors import OptionError, QualityError
from models.base import FuseContext
from quality.accumulators import FullAccumulator, ReducedAccumulator, full_tiles, reduced_tiles
from quality.checks import BLOCK
from quality.eval_io import WindowReader
from quality.quicklook import HqnrMap, ReducedPreviews
from raster.scene import Scene
from tiling.engine import Progress, parallel_map
from tiling.reader import TileReader
from tiling.windows import TileSpec


def score_tile(tile: int) -> int:
    """Full-resolution cores must sit on the 32-pixel block grid."""
    return max(BLOCK, (tile // BLOCK) * BLOCK)


def score_reduced(
    shape: tuple[int, int, int],
    ratio: int,
    bit_depth: int | None,
    fused: WindowReader,
    gt: WindowReader,
    bar: Progress,
    previews: ReducedPreviews | None,
    label: str,
    tile: int,
    threads: int,
) -> dict[str, float]:
    """Stream fused and GT tiles (core + 1 before, 31 after) into a ReducedAccumulator."""
    if bit_depth is None:
        raise OptionError(
            "PSNR and SSIM need the bit depth (peak 2^L - 1) and the data do not say it; "
            "give --bit-depth L"
        )
    b, rows, cols = shape
    acc = ReducedAccumulator(shape, ratio, bit_depth)
    tiles = reduced_tiles(rows, cols, tile, tile)
    done = [0]

    def work(tw: Any) -> tuple[np.ndarray, np.ndarray]:
        r0, r1, c0, c1 = tw.array
        return fused.read(r0, r1, c0, c1), gt.read(r0, r1, c0, c1)

    def consume(tw: Any, res: tuple[np.ndarray, np.ndarray]) -> None:
        f, g = res
        r0, _, c0, _ = tw.array
        acc.add(f, g, r0, c0, tw.core)
        if previews is not None:
            k0, k1, l0, l1 = tw.core
            sl = (slice(None), slice(k0 - r0, k1 - r0), slice(l0 - c0, l1 - c0))
            previews.add(label, f[sl], g[sl], tw.core)
        cr = tw.core
        done[0] += (cr[1] - cr[0]) * (cr[3] - cr[2])
        bar("score", done[0], rows * cols)

    parallel_map(tiles, work, consume, threads, max_inflight=threads + 2)
    return acc.result()


def score_full(
    scene: Scene,
    ctx: FuseContext,
    fused: WindowReader,
    shape: tuple[int, int],
    bar: Progress,
    heat: dict[str, np.ndarray] | None,
    label: str,
    what: str,
    tile: int,
    threads: int,
) -> dict[str, float]:
    """Stream F, PAN and EXP(MS) tiles (32-aligned cores + PAN_lp halo) into a FullAccumulator."""
    rows, cols = shape
    acc = FullAccumulator((scene.n_bands, rows, cols), scene.ratio, ctx.ms_gains)
    t = score_tile(tile)
    tiles = full_tiles(rows, cols, t, t, scene.ratio)
    reader = TileReader(scene, ctx, resampling="exp", dtype=np.float64)
    hq = HqnrMap() if heat is not None else None
    done = [0]

    def work(tw: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r0, r1, c0, c1 = tw.array
        tile = reader.read(TileSpec(0, r0, c0, r1 - r0, c1 - c0, 0))
        if not tile.valid.all():
            raise QualityError(
                f"the PAN/MS has nodata near rows {r0}..{r1}, cols {c0}..{c1}; the "
                "protocol's indexes have no mask (quality.md): crop the scene to its data"
            )
        f = fused.read(r0, r1, c0, c1)
        if not np.isfinite(f).all():
            raise QualityError(
                f"{what} has NaN/inf or nodata pixels near rows {r0}..{r1}, cols {c0}..{c1}; "
                "the indexes have no mask: fill or crop them before evaluating"
            )
        return f, tile.pan, tile.ms

    def consume(tw: Any, res: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        r0, _, c0, _ = tw.array
        if hq is not None:
            hq.before(acc)
        acc.add(res[0], res[1], res[2], r0, c0, tw.core)
        if hq is not None:
            hq.after(acc, tw.core)
        cr = tw.core
        done[0] += (cr[1] - cr[0]) * (cr[3] - cr[2])
        bar("score", done[0], rows * cols)

    try:
        parallel_map(tiles, work, consume, threads, max_inflight=threads + 2)
    finally:
        reader.close()
    out = acc.result()
    if hq is not None and heat is not None:
        heat[label] = hq.grid(acc)[0]
    return out
