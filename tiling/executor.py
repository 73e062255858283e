"""The one executor: plan, read, apply, blend and hand to a sink, for every method.

``fuse`` (:mod:`tiling.fuse`), ``evaluate -m`` (:mod:`quality.eval_runs`) and batch runs
call :func:`prepare` then :func:`execute` (or :func:`run_method`, both at once), so they
all get the same tiles or patches, blending, normalisation and device for a method. The
prepared method's spec (:class:`models.protocol.MethodSpec`) says how it is tiled:

* ``exact``: grid tiles with the method's halo (:func:`tiling.windows.plan_tiles`), read
  and applied in worker threads (:func:`tiling.engine.parallel_map`); each tile's core
  equals the whole-image result. A method's fit pass runs in ``prepare`` through a
  :class:`Scan` over the same tiles and reader.
* ``blended``: equal-sized overlapping patches (:mod:`tiling.patches`) in batches,
  through the reader/apply/writer pipeline of :mod:`tiling.blended`.

Nothing here prints: progress goes through ``progress(phase, done, total)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.base import FuseContext, Tile
from models.protocol import EXACT, PrepareContext, Prepared, RunSettings
from models.registry import check_method, prepare_method
from physics.kernels import get_kernel
from raster.scene import Scene
from tiling.allocator import keep_freed_memory
from tiling.engine import Progress, default_threads, parallel_map, sum_partials
from tiling.reader import TileReader
from tiling.windows import TileSpec, plan_tiles

Post = Callable[[TileSpec, np.ndarray, np.ndarray], Any]


@dataclass
class Scan:
    """A streaming pass over the scene's grid tiles (:class:`models.protocol.TileScan`)."""

    scene: Scene
    ctx: FuseContext
    resampling: str
    tile: int
    threads: int
    dtype: Any
    progress: Progress | None = None
    stats: Any = None

    def sum(self, halo: int, work: Callable[[Tile], dict[str, Any]]) -> dict[str, Any]:
        """Sum ``work(tile)`` over every tile in tile order: float partials added in
        completion order differ in their last bits from run to run, and so could a pixel
        (:func:`tiling.engine.parallel_map`)."""
        h, w = self.scene.out_shape
        specs = plan_tiles(h, w, self.tile, halo)
        total = sum(s.pixels for s in specs)
        report = self.progress or (lambda phase, done, tot: None)
        reader = TileReader(
            self.scene, self.ctx, resampling=self.resampling, dtype=self.dtype, stats=self.stats
        )
        totals: dict[str, Any] = {}
        done = [0]

        def consume(spec: TileSpec, part: dict[str, Any]) -> None:
            sum_partials(totals, part)
            done[0] += spec.pixels
            report("fit", done[0], total)

        report("fit", 0, total)
        keep_freed_memory()  # tile buffers are reused, not faulted in again (tiling.allocator)
        try:
            parallel_map(specs, lambda s: work(reader.read(s)), consume, self.threads, ordered=True)
        finally:
            reader.close()
        return totals


def context_for(
    scene: Scene,
    ctx: FuseContext,
    sensor: str,
    settings: RunSettings | None = None,
    *,
    resampling: str = "exp",
    tile: int = 512,
    threads: int | None = None,
    dtype: Any = np.float32,
    progress: Progress | None = None,
    stats: Any = None,
) -> PrepareContext:
    """The :class:`models.protocol.PrepareContext` of one run, with its tile scan."""
    get_kernel(resampling)  # an unknown --resampling is refused before any work
    nthreads = threads or default_threads()
    scan = Scan(scene, ctx, resampling, tile, nthreads, dtype, progress, stats)
    return PrepareContext(ctx, sensor, ctx.bit_depth, settings or RunSettings(), scan)


def check(name: str, scene: Scene, context: PrepareContext) -> None:
    """Phase 1 for ``name`` on ``scene``: from headers only, before any output exists."""
    check_method(name, scene, context)


def prepare(name: str, scene: Scene, context: PrepareContext) -> Prepared:
    """Phases 1 and 2: the method checked, then prepared for ``scene``."""
    return prepare_method(name, scene, context)


def execute(
    scene: Scene,
    prepared: Prepared,
    ctx: FuseContext,
    sink: Callable[..., None],
    *,
    settings: RunSettings | None = None,
    resampling: str = "exp",
    tile: int = 512,
    threads: int | None = None,
    dtype: Any = np.float32,
    progress: Progress | None = None,
    post: Post | None = None,
    stats: Any = None,
    rows: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Stream ``scene`` through ``prepared``; returns run facts.

    ``rows`` = (r0, r1), both multiples of ``tile`` (r1 may be the scene height): only
    output rows [r0, r1) are fused and sent to the sink, each pixel equal to what the
    whole run gives it (exact methods: the tiles of those rows; blended methods: every
    patch whose blend window reaches them, with the whole scene's patch plan). A scene
    too large for one machine is fused as such row ranges on several
    (:mod:`batch.split`).

    Calls ``sink(spec, fused_core, valid_core)`` in this thread for every tile or strip
    (blended methods send full-width strips aligned to ``tile`` rows); with ``post``,
    a worker thread first runs ``post(spec, fused_core, valid_core)`` (e.g. conversion
    and compression, so they run in parallel too) and the sink receives
    ``sink(spec, post_result)``.
    """
    get_kernel(resampling)
    if prepared.spec.tiling != EXACT:
        from tiling.blended import run_blended

        info = run_blended(
            scene,
            prepared,
            ctx,
            sink,
            settings=settings,
            resampling=resampling,
            progress=progress,
            align=tile,
            post=post,
            stats=stats,
            rows=rows,
        )
    else:
        info = _run_exact(
            scene, prepared, ctx, sink, resampling, tile, threads, dtype, progress, post, stats,
            rows,
        )  # fmt: skip
    adaptation = getattr(prepared, "report", None)  # --adapt's report, when it adapted
    info["tags"] = prepared.tags()  # what made the image (weights, steps, seed...)
    return {**info, "adaptation": adaptation} if adaptation else info


def _run_exact(
    scene: Scene,
    prepared: Prepared,
    ctx: FuseContext,
    sink: Callable[..., None],
    resampling: str,
    tile: int,
    threads: int | None,
    dtype: Any,
    progress: Progress | None,
    post: Post | None,
    stats: Any,
    rows: tuple[int, int] | None = None,
) -> dict[str, Any]:
    keep_freed_memory()  # tile buffers are reused, not faulted in again (tiling.allocator)
    h, w = scene.out_shape
    specs = plan_tiles(h, w, tile, prepared.spec.halo)
    if rows is not None:
        check_rows(rows, tile, h)
        specs = [s for s in specs if rows[0] <= s.row < rows[1]]
    total = sum(s.pixels for s in specs)
    nthreads = threads or default_threads()
    reader = TileReader(scene, ctx, resampling=resampling, dtype=dtype, stats=stats)
    report = progress or (lambda phase, done, tot: None)

    def work(spec: TileSpec) -> Any:
        t: Tile = reader.read(spec)
        out = prepared.apply(t)
        fused, valid = out[(slice(None), *t.core)], t.valid[t.core]
        return (post(spec, fused, valid),) if post else (fused, valid)

    done = [0]

    def consume(spec: TileSpec, res: tuple[Any, ...]) -> None:
        sink(spec, *res)
        done[0] += spec.pixels
        report("fuse", done[0], total)

    report("fuse", 0, total)
    try:
        parallel_map(specs, work, consume, nthreads, max_inflight=nthreads + 2)
    finally:
        reader.close()
    return {"tiles": len(specs), "tile": tile, "halo": prepared.spec.halo}


def check_rows(rows: tuple[int, int], align: int, height: int) -> None:
    """A row range of :func:`execute`: 0 <= r0 < r1 <= height, on the ``align`` grid."""
    r0, r1 = rows
    if not (0 <= r0 < r1 <= height) or r0 % align or (r1 % align and r1 != height):
        raise ValueError(f"rows {rows} are not a range of {align}-row strips of {height} rows")


def run_method(
    scene: Scene,
    method_name: str,
    ctx: FuseContext,
    sink: Callable[..., None],
    *,
    sensor: str = "generic",
    settings: RunSettings | None = None,
    resampling: str = "exp",
    tile: int = 512,
    threads: int | None = None,
    dtype: Any = np.float32,
    progress: Progress | None = None,
    post: Post | None = None,
    stats: Any = None,
) -> dict[str, Any]:
    """:func:`prepare` then :func:`execute`: the whole run of one method on ``scene``."""
    context = context_for(
        scene,
        ctx,
        sensor,
        settings,
        resampling=resampling,
        tile=tile,
        threads=threads,
        dtype=dtype,
        progress=progress,
        stats=stats,
    )
    prepared = prepare(method_name, scene, context)
    return execute(
        scene,
        prepared,
        ctx,
        sink,
        settings=settings,
        resampling=resampling,
        tile=tile,
        threads=threads,
        dtype=dtype,
        progress=progress,
        post=post,
        stats=stats,
    )
