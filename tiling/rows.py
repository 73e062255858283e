"""One scene fused as row ranges in other processes or machines, written by this one.

A scene too large for one machine is cut into strips of whole output block rows; each
strip is a task (:class:`RowTask`) that reads its rows' inputs, fuses them with the
method prepared once by the caller (:func:`tiling.executor.execute` with ``rows``: every
pixel equals the whole run's, blended patches included) and encodes its COG blocks and
their share of the first overview (:meth:`raster.fastcog.BlockEncoder.encode`). Only
the results travel back: the calling process places them in the one output file
(``put``), builds the smaller overviews and publishes the COG, so no GDAL file is ever
open for writing in two processes. The inputs must be readable at the same paths by
every worker (shared storage).

The map that runs the tasks is the caller's (``rows_map``: dask.distributed in
:mod:`batch.cluster`, or the builtin ``map`` for a test): it must return the results in
task order.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio

from models.base import FuseContext
from raster.radiometry import LevelStats
from raster.scene import open_scene
from tiling.windows import TileSpec

#: ``rows_map(fuse_rows, tasks, prepared)``: the results of ``fuse_rows(task, prepared)``
#: for every task, in task order.
RowsMap = Callable[[Callable[..., "RowResult"], list["RowTask"], Any], Iterable["RowResult"]]

#: Output block rows per task, times the tile: fewer, taller tasks re-read and re-fuse
#: fewer halo rows (blended patches on a task's border are fused by both neighbours).
TASK_TILES = 4


@dataclass(frozen=True)
class RowTask:
    """Output rows ``rows`` of the scene (PAN ``pan``, MS ``ms``) as ``fuse`` would
    write them: converted by ``convert`` and encoded by ``encoder``."""

    pan: str
    ms: tuple[str, ...]
    ratio: int | None
    nodata: float | None
    ctx: FuseContext
    settings: Any
    resampling: str
    tile: int
    threads: int | None
    convert: Any  # (fused, valid) -> output block: tiling.fuse.OutputConversion
    encoder: Any  # raster.fastcog.BlockEncoder or raster.cog.RawBlocks
    rows: tuple[int, int]
    gdal_env: dict[str, Any] = field(default_factory=dict)


@dataclass
class RowResult:
    """The encoded blocks of a task's rows, in row order, and what its reader saw."""

    rows: tuple[int, int]
    blocks: list[Any]
    stats: tuple[float, int, float, int, int]
    facts: dict[str, Any]
    worker: str = ""  # host:pid of the process that fused it


def row_ranges(height: int, tile: int, task_tiles: int | None = None) -> list[tuple[int, int]]:
    """[r0, r1) strips of ``task_tiles`` (default :data:`TASK_TILES`) tile rows covering
    ``height`` rows."""
    step = tile * max(1, int(TASK_TILES if task_tiles is None else task_tiles))
    return [(r, min(r + step, height)) for r in range(0, height, step)]


def fuse_rows(task: RowTask, prepared: Any) -> RowResult:
    """Fuse and encode one task's rows (in a worker): see the module docstring."""
    from tiling.executor import execute

    blocks: list[Any] = []
    stats = LevelStats()
    with rasterio.Env(**task.gdal_env):
        scene = open_scene(task.pan, list(task.ms), ratio=task.ratio, nodata=task.nodata)

        def encode(spec: TileSpec, fused: np.ndarray, valid: np.ndarray) -> Any:
            return task.encoder.encode(task.convert(fused, valid), spec.row, spec.col)

        def sink(spec: TileSpec, encoded: Any) -> None:
            blocks.append(encoded)

        facts = execute(
            scene,
            prepared,
            task.ctx,
            sink,
            settings=task.settings,
            resampling=task.resampling,
            tile=task.tile,
            threads=task.threads,
            post=encode,
            stats=stats,
            rows=task.rows,
        )
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return RowResult(task.rows, blocks, stats.totals(), facts, worker)


def local_rows_map(fn: Callable[..., RowResult], tasks: list[RowTask], prepared: Any):
    """The tasks one after the other in this process (tests; the reference)."""
    return (fn(t, prepared) for t in tasks)
