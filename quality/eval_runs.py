"""One method's run inside an evaluation: fuse into a temporary file, score, report.

Each (method, scale) of ``pansharp evaluate -m`` fuses through the executor ``fuse``
uses (:func:`tiling.executor.run_method`: same tiles or patches, blending,
normalisation, device) into a float64 GeoTIFF, then streams it into the scoring pass
(:mod:`quality.eval_scoring`). A method that fails becomes an ``error`` entry and the
other methods are still scored; interruptions stop the whole run, and the temporary
folder is removed whatever happens. Every method is checked (phase 1 of the method
protocol: a weights file that is missing or does not fit) before any work.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from affine import Affine

from errors import OptionError, PansharpError, QualityError, WeightsError
from models.base import FuseContext
from models.protocol import PrepareContext, RunSettings
from models.registry import get_entry, methods_taking, refuse_run_options
from physics.sensors import Sensor
from quality.eval_degrade import UNIT_GRID, ReducedGeometry
from quality.eval_io import Source, WindowReader, create_float_raster, file_sources, write_block
from quality.eval_report import failure, result
from quality.eval_scoring import score_full, score_reduced
from quality.quicklook import ReducedPreviews
from raster.scene import Scene
from tiling.engine import Progress
from tiling.executor import check, run_method
from tiling.fuse import GDAL_CACHE_BYTES
from tiling.windows import TileSpec


@contextmanager
def gdal_env(threads: int) -> Iterator[None]:
    """GDAL with no block cache (memory must not grow with the scene) and ``threads``."""
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES, GDAL_NUM_THREADS=str(threads)):
        yield


@contextmanager
def workdir() -> Iterator[str]:
    """A temporary folder for the intermediate GeoTIFFs, removed whatever happens."""
    folder = tempfile.mkdtemp(prefix="pansharp-evaluate-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Bar:
    """Maps the engine's fit/fuse phases and the scoring phase onto one progress bar."""

    def __init__(self, progress: Progress | None, label: str, parts: dict[str, int]) -> None:
        self.progress = progress
        self.label = label
        self.offsets: dict[str, int] = {}
        acc = 0
        for k, v in parts.items():
            self.offsets[k] = acc
            acc += v
        self.total = max(acc, 1)

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.progress is not None and phase in self.offsets:
            self.progress(self.label, self.offsets[phase] + done, self.total)


@dataclass
class Job:
    """What every method run of one evaluation shares."""

    sensor: Sensor
    bit_depth: int | None
    tile: int
    threads: int
    folder: str
    progress: Progress | None
    weights: dict[str, str]
    #: test-time adaptation of the deep methods (RunSettings adapt, adapt_steps,
    #: adapt_time): each adapts on the inputs its protocol gives (the degraded pair at
    #: reduced resolution, never the reference)
    adapt: tuple[str | None, int | None, float | None] = (None, None, None)
    #: sampler steps of the diffusion methods (``--steps``; None: each one's default)
    steps: int | None = None

    def settings(self, name: str) -> RunSettings:
        return settings_for(name, self.weights, self.adapt, self.steps)


def settings_for(
    name: str,
    weights: dict[str, str],
    adapt: tuple[str | None, int | None, float | None] = (None, None, None),
    steps: int | None = None,
) -> RunSettings:
    """The run settings of method ``name``: its weights, the adaptation and the sampler
    steps where it takes them."""
    options = get_entry(name).info.run_options
    mode, n, seconds = adapt if "adapt" in options else (None, None, None)
    return RunSettings(
        weights=weights.get(name),
        adapt=mode,
        adapt_steps=n,
        adapt_time=seconds,
        steps=steps if "steps" in options else None,
    )


def attempt(
    method: str,
    scale: str,
    fn: Callable[[], dict[str, Any]],
    previews: dict[str, Any] | None,
) -> dict[str, Any]:
    """Run one (method, scale) evaluation; a failure becomes an ``error`` entry.

    Interruptions (Ctrl-C, SIGTERM) and I/O errors still stop the whole run; a failed
    method's partial quicklook preview is dropped.
    """
    try:
        return fn()
    except (PansharpError, ValueError, RuntimeError, ArithmeticError) as exc:
        if isinstance(exc, KeyboardInterrupt):  # errors.Interrupted
            raise
        if previews is not None:
            previews.pop(method, None)
        return failure(method, scale, exc)


def check_methods(
    names: Sequence[str],
    scene: Scene,
    ctx: FuseContext,
    sensor: Sensor,
    bit_depth: int | None,
    weights: dict[str, str] | None,
    adapt: tuple[str | None, int | None, float | None] = (None, None, None),
    steps: int | None = None,
) -> None:
    """Phase 1 of the method protocol for every method, before any work: a weights file
    that is missing or does not fit names the fix (``--weights METHOD=FILE``); ``--steps``
    given while no method samples is refused."""
    given = weights or {}
    takers = methods_taking("steps")
    if steps is not None and not set(names) & set(takers):
        raise OptionError(
            f"--steps is the sampler's step count of {', '.join(takers)}; none of the "
            "methods given (-m) samples: drop --steps or add one of them"
        )
    for n in given:
        if n in names:
            refuse_run_options(n, ["weights"], {"weights": f"--weights {n}=FILE"})
    for n in names:
        context = PrepareContext(ctx, sensor.name, bit_depth, settings_for(n, given, adapt, steps))
        try:
            check(n, scene, context)
        except WeightsError as exc:
            msg = str(exc).rstrip()
            stop = "" if msg.endswith(".") else "."
            raise WeightsError(
                f"{msg}{stop} With pansharp evaluate: --weights {n}=FILE (or --sensor S for "
                "weights shipped for another sensor)."
            ) from None


def with_adaptation(row: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """A scored row with the method's adaptation report on that protocol's inputs (mode,
    start, steps, seconds, losses), so a reader sees what each adapted score cost, and
    the sampler steps and seed of a diffusion method (what made that score)."""
    if info.get("adaptation"):
        row["adaptation"] = info["adaptation"]
    tags = info.get("tags", {})
    if "PANSHARP_SAMPLER_STEPS" in tags:
        row["steps"] = int(tags["PANSHARP_SAMPLER_STEPS"])
        row["seed"] = int(tags["PANSHARP_SEED"])
    return row


def fuse_to_file(
    job: Job,
    scene: Scene,
    name: str,
    ctx: FuseContext,
    path: str,
    bar: Bar,
) -> dict[str, Any]:
    """Run ``name`` over ``scene`` into a float64 GeoTIFF on the scene's output grid;
    the executor's run info (with ``adaptation`` when ``--adapt`` adapted it)."""
    h, w = scene.out_shape
    t = scene.out_transform
    ds = create_float_raster(
        path, scene.n_bands, h, w, t if t != Affine.identity() else UNIT_GRID, scene.crs
    )
    try:

        def sink(spec: TileSpec, fused: np.ndarray, valid: np.ndarray) -> None:
            if not valid.all():
                raise QualityError(
                    f"{name} left {int(valid.size - valid.sum())} pixels without data in the "
                    f"tile at row {spec.row}, col {spec.col}; the scene must be nodata-free"
                )
            write_block(ds, fused, spec.row, spec.col)

        # the executor fuse uses: same tiles or patches, blending, normalisation, device
        return run_method(
            scene,
            name,
            ctx,
            sink,
            sensor=job.sensor.name,
            settings=job.settings(name),
            resampling="exp",
            tile=job.tile,
            threads=job.threads,
            dtype=np.float64,
            progress=bar,
        )
    finally:
        ds.close()


def reduced_one(
    job: Job,
    name: str,
    scene: Scene,
    geom: ReducedGeometry,
    lr_scene: Scene,
    lr_ctx: FuseContext,
    bar: Bar,
    previews: ReducedPreviews | None,
) -> dict[str, Any]:
    """Fuse the degraded pair with ``name`` and score it against the GT (quality.md A)."""
    path = os.path.join(job.folder, "fused_reduced.tif")
    try:
        info = fuse_to_file(job, lr_scene, name, lr_ctx, path, bar)
        gt_sources = [Source(b.path, b.index) for b in scene.bands]
        with (
            WindowReader(file_sources(path)) as fused,
            WindowReader(gt_sources, (geom.ms_row0, geom.ms_col0)) as gt,
        ):
            values = score_reduced(
                (scene.n_bands, geom.rows, geom.cols),
                geom.ratio,
                job.bit_depth,
                fused,
                gt,
                bar,
                previews,
                name,
                job.tile,
                job.threads,
            )
    finally:
        if os.path.exists(path):
            os.remove(path)
    return with_adaptation(result(name, "reduced", values), info)


def full_one(
    job: Job,
    name: str,
    scene: Scene,
    ctx: FuseContext,
    shape: tuple[int, int],
    bar: Bar,
    heat: dict[str, np.ndarray] | None,
) -> dict[str, Any]:
    """Fuse the scene with ``name`` and score it without reference (quality.md B)."""
    path = os.path.join(job.folder, "fused_full.tif")
    try:
        info = fuse_to_file(job, scene, name, ctx, path, bar)
        with WindowReader(file_sources(path)) as fused:
            values = score_full(
                scene, ctx, fused, shape, bar, heat, name, name, job.tile, job.threads
            )
    finally:
        if os.path.exists(path):
            os.remove(path)
    return with_adaptation(result(name, "full", values), info)
