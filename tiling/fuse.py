"""``pansharp fuse`` as a library call: PAN/MS files in, a georeferenced COG out.

The method goes through the protocol (:mod:`models.protocol`) on the one executor
(:mod:`tiling.executor`): checked from headers, prepared (a classical fit pass, a
network's weights loaded) before the output is created, then streamed into the COG
writer. Nothing here prints: progress goes through the ``progress(phase, done, total)``
callback, and the CLI owns the progress bar. What the scene is (sensor, bit depth, band
names, weights, gains, output nodata) is decided once by :mod:`raster.scene_facts`, by
the same rules ``evaluate`` applies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio

from errors import OptionError, RasterFormatError
from models.base import FuseContext
from models.protocol import PrepareContext, RunSettings, parse_batch_size
from models.registry import check_bands_and_ratio, get_entry
from physics.sensors import Sensor
from raster.cog import RasterSpec, open_writer
from raster.destination import COG_SUFFIXES, check_destination
from raster.profiles import get_profile
from raster.radiometry import BitDepth, LevelStats, colour_from_names, radiometry_warnings
from raster.scene import Scene, open_scene
from raster.scene_facts import (
    FROM_BIT_DEPTH_OPTION,
    SceneOptions,
    choose_sensor,
    decide,
    detected,
    facts_of,
)
from tiling.engine import Progress, default_threads
from tiling.executor import context_for, execute, prepare
from tiling.rows import RowsMap, RowTask, fuse_rows, row_ranges
from tiling.windows import TileSpec

# GDAL's block cache, in bytes (rasterio passes GDAL_CACHEMAX to GDALSetCacheMax64): 128
# bytes, i.e. none. The tile reader keeps its own MS strips, and a block cache of 128 MB
# cost 63 MB of peak RSS for no speed here; memory must not grow with the scene.
GDAL_CACHE_BYTES = 128
# GDAL's own decoding threads: one. The tiles are read by ``nthreads`` workers already;
# a GDAL pool on top only adds wake-ups (8000^2 Brovey, 2 cores: 0.5 s less CPU).
GDAL_ENV = {"GDAL_CACHEMAX": GDAL_CACHE_BYTES, "GDAL_NUM_THREADS": "1"}


@dataclass
class FuseOptions:
    """Every ``fuse`` option, with the CLI's defaults."""

    method: str = "gsa"
    sensor: str | None = None
    band_weights: list[float] | None = None
    resampling: str = "exp"
    nodata: float | None = None
    bit_depth: int | None = None
    ratio: int | None = None
    tile: int = 512
    threads: int | None = None
    dtype: str | None = None  # None: the MS dtype
    profile: str = "deflate"
    creation_options: dict[str, str] = field(default_factory=dict)
    overwrite: bool = False
    method_options: dict[str, Any] = field(default_factory=dict)
    # how the method is applied (models.protocol.RunSettings, for methods that declare
    # them): weights file (None: the registry's default for the model and sensor),
    # device, batch size (None: auto), precision, patch size and overlap in PAN pixels
    # (None: from the receptive field), seed of stochastic methods
    weights: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    precision: str = "fp32"
    patch: int | None = None
    overlap: int | None = None
    seed: int = 0  # positional noise of stochastic methods (models.iterative.noise)
    steps: int | None = None  # DDIM steps of diffusion models (None: the model's default)
    # test-time adaptation of deep models (models.deep.adapt)
    adapt: str | None = None
    adapt_steps: int | None = None
    adapt_time: float | None = None
    save_adapted: str | None = None
    # extra metadata tags written into the output (batch: its fingerprint); pansharp's
    # own PANSHARP_* tags win over a key given here
    tags: dict[str, str] = field(default_factory=dict)

    def scene_options(self) -> SceneOptions:
        """What the options say about the scene (:mod:`raster.scene_facts` decides the rest)."""
        return SceneOptions(self.sensor, self.bit_depth, self.band_weights)

    def run_settings(self) -> RunSettings:
        """The options of how the method is applied (:class:`models.protocol.RunSettings`)."""
        return RunSettings(
            weights=self.weights,
            device=self.device,
            batch_size=parse_batch_size(self.batch_size),
            precision=self.precision,
            tile=self.patch,
            overlap=self.overlap,
            threads=self.threads,
            seed=int(self.seed),
            steps=self.steps,
            adapt=self.adapt,
            adapt_steps=self.adapt_steps,
            adapt_time=self.adapt_time,
            save_adapted=self.save_adapted,
        )


@dataclass
class FuseResult:
    output: str
    method: str
    sensor: str
    ratio: int
    width: int
    height: int
    bands: int
    dtype: str
    seconds: float
    bit_depth: int | None = None
    bit_depth_source: str = ""
    nodata: float | None = None
    warnings: list[str] = field(default_factory=list)
    sensor_source: str = ""  # raster.scene_facts: --sensor, detected or generic
    split: dict[str, Any] | None = None  # row tasks and the workers that ran them
    adaptation: dict[str, Any] | None = None  # --adapt: starting point, steps, losses

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def megapixels_per_second(self) -> float:
        return self.pixels / 1e6 / max(self.seconds, 1e-9)

    def summary(self) -> dict[str, Any]:
        """The run summary ``fuse --json`` prints and ``batch`` records (JSON-safe)."""
        nodata = self.nodata
        if nodata is not None and nodata != nodata:
            nodata = "nan"  # JSON has no NaN; GDAL writes nodata as text too
        return {
            "output": str(self.output),
            "method": self.method,
            "sensor": self.sensor,
            "ratio": self.ratio,
            "width": self.width,
            "height": self.height,
            "bands": self.bands,
            "dtype": self.dtype,
            "pixels": self.pixels,
            "seconds": round(self.seconds, 3),
            "megapixels_per_second": round(self.megapixels_per_second, 3),
            "bit_depth": self.bit_depth,
            "bit_depth_source": self.bit_depth_source,
            "nodata": "nan"
            if self.nodata is not None and self.nodata != self.nodata
            else self.nodata,
            "warnings": list(self.warnings),
            **({"split": self.split} if self.split is not None else {}),
            **({"adaptation": self.adaptation} if self.adaptation else {}),
        }


def resolve_sensor(scene: Scene, name: str | None) -> Sensor:
    """``--sensor`` if given, else detected from metadata, else the generic preset
    (:func:`raster.scene_facts.choose_sensor`; :func:`raster.scene_facts.decide` gives
    every fact at once)."""
    return choose_sensor(name, None, lambda: detected(scene), [])[0]


def resolve_bit_depth(scene: Scene, sensor: Sensor, explicit: int | None) -> int | None:
    """The bit depth :func:`raster.scene_facts.decide` gives the scene with ``sensor``."""
    return decide(scene, SceneOptions(sensor, explicit)).bits


OUTPUT_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")


def check_options(opts: FuseOptions) -> None:
    """Refuse option values no run can use, before any file is opened."""
    if opts.dtype is not None:
        try:
            name = np.dtype(opts.dtype).name
        except TypeError:
            name = None
        if name not in OUTPUT_DTYPES:
            raise OptionError(
                f"--dtype {opts.dtype} is not an output data type; use one of "
                f"{', '.join(OUTPUT_DTYPES)}"
            )
        opts.dtype = name
    if opts.threads is not None and opts.threads < 1:
        raise OptionError(
            f"--threads {opts.threads}: give 1 or more worker threads (default: all cores)"
        )
    if opts.tile < 16:
        raise OptionError(f"--tile {opts.tile}: give a tile size of 16 PAN pixels or more")


def build_context(
    scene: Scene, sensor: Sensor, opts: FuseOptions, bit_depth: int | None
) -> FuseContext:
    """The method context of ``scene`` with a sensor and bit depth already decided (band
    weights from ``opts``, gains in the image's band order: :func:`raster.scene_facts.facts_of`)."""
    depth = BitDepth(bit_depth, FROM_BIT_DEPTH_OPTION)
    facts = facts_of(scene, sensor, depth, opts.band_weights)
    return facts.context(opts.method_options)


def method_ready(pan: str, ms: list[str], opts: FuseOptions) -> bool:
    """True when ``opts.method`` passes the protocol's ``check`` on the scene (from the
    raster and weights headers, without torch); any problem gives False, and the run
    then reports it in its own order, as :func:`fuse_files` would without this.

    For the CLI, which imports torch before a torch method's run, so that the run's own
    clock and the progress bar's frozen imports do not include that import, and only
    when the run will get that far (weights that do not fit: ~3 s and ~280 MB saved).
    """
    from errors import PansharpError
    from tiling.executor import check

    try:
        scene = open_scene(pan, ms, ratio=opts.ratio, nodata=opts.nodata)
        facts = decide(scene, opts.scene_options(), headers_only=True)  # no MS read
        ctx = facts.context(opts.method_options)
        context = PrepareContext(ctx, facts.sensor.name, None, opts.run_settings())
        check(opts.method, scene, context)
    except PansharpError:
        return False
    return True


def to_output(
    fused: np.ndarray, valid: np.ndarray, dtype: str, nodata: float | None, max_value: float | None
) -> np.ndarray:
    """Round and clip to the output type's range (and the bit depth), nodata where invalid.

    A valid pixel that would equal the nodata value is nudged by one DN (GDAL does the
    same) so that data never turns into nodata.
    """
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        hi = min(float(info.max), max_value) if max_value else float(info.max)
        rounded = np.rint(fused)
        out = np.clip(rounded, info.min, hi, out=rounded).astype(dt)
        if nodata is not None:
            nd = dt.type(nodata)
            hit = valid[None] & (out == nd)
            if hit.any():
                out[hit] = nd + 1 if nd < hi else nd - 1
            out[:, ~valid] = nd
    else:
        out = fused.astype(dt)
        bad = ~np.isfinite(out)
        if nodata is not None:
            out[:, ~valid] = nodata
            out[bad] = nodata
        else:
            out[:, ~valid] = np.nan
    return out


@dataclass(frozen=True)
class OutputConversion:
    """:func:`to_output` with the run's output type, nodata and clip bound, as a value
    that pickles (row ranges converted in other processes, :mod:`tiling.rows`)."""

    dtype: str
    nodata: float | None
    max_value: float | None

    def __call__(self, fused: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return to_output(fused, valid, self.dtype, self.nodata, self.max_value)


@dataclass
class PreparedRun:
    """A scene opened, its facts decided and its method prepared: everything of a fuse
    run before pixels are written (:func:`fuse_files`; the lazy :func:`pansharp.fuse`)."""

    scene: Scene
    facts: Any  # raster.scene_facts.SceneFacts
    ctx: FuseContext
    settings: RunSettings
    prepared: Any  # models.protocol.Prepared
    spec: RasterSpec  # the output's
    convert: OutputConversion
    stats: LevelStats


def prepare_run(
    pan: str,
    ms: list[str],
    opts: FuseOptions,
    progress: Progress | None = None,
    threads: int | None = None,
) -> PreparedRun:
    """Open ``pan``/``ms``, decide the scene's facts, prepare ``opts.method`` (a fit pass,
    weights loaded and checked) and describe the output; call inside ``GDAL_ENV``."""
    scene = open_scene(pan, ms, ratio=opts.ratio, nodata=opts.nodata)
    check_bands_and_ratio(get_entry(opts.method).info, scene.n_bands, scene.ratio)
    facts = decide(scene, opts.scene_options())
    ctx = facts.context(opts.method_options)
    out_dtype = opts.dtype or scene.dtype
    nodata = facts.output_nodata(out_dtype)
    h, w = scene.out_shape
    settings = opts.run_settings()
    stats = LevelStats()
    context = context_for(
        scene,
        ctx,
        facts.sensor.name,
        settings,
        resampling=opts.resampling,
        tile=opts.tile,
        threads=threads or opts.threads or default_threads(),
        progress=progress,
        stats=stats,
    )
    prepared = prepare(opts.method, scene, context)  # weights checked before any output
    # sensor, ratio, bit depth: read back by evaluate (raster.scene_facts.FusedTags)
    tags = {**opts.tags, "PANSHARP_METHOD": opts.method, **facts.tags(), **prepared.tags()}
    descriptions = list(facts.band_names)
    spec = RasterSpec(
        count=scene.n_bands,
        height=h,
        width=w,
        dtype=out_dtype,
        crs=scene.crs,
        transform=scene.out_transform,
        nodata=nodata,
        descriptions=descriptions,
        colorinterp=colour_from_names(descriptions, scene.colorinterp),
        tags=tags,
    )
    clip_max = ctx.max_value if np.dtype(out_dtype).kind in "iu" else None
    convert = OutputConversion(out_dtype, nodata, clip_max)
    return PreparedRun(scene, facts, ctx, settings, prepared, spec, convert, stats)


def row_tasks(
    pan: str, ms: list[str], opts: FuseOptions, run: PreparedRun, encoder: Any
) -> list[RowTask]:
    """The row-range tasks of ``run`` (:mod:`tiling.rows`), blocks made by ``encoder``."""
    h = run.scene.out_shape[0]
    return [
        RowTask(
            pan,
            tuple(ms),
            opts.ratio,
            opts.nodata,
            run.ctx,
            run.settings,
            opts.resampling,
            opts.tile,
            opts.threads,
            run.convert,
            encoder,
            rows,
            GDAL_ENV,
        )  # fmt: skip
        for rows in row_ranges(h, opts.tile)
    ]


def fuse_files(
    pan: str,
    ms: list[str],
    out: str,
    opts: FuseOptions,
    progress: Progress | None = None,
    rows_map: RowsMap | None = None,
) -> FuseResult:
    """Fuse PAN and MS files into the COG ``out``; see the module docstring.

    With ``rows_map`` the scene is fused as row ranges by that map (other processes or
    machines, :mod:`tiling.rows`), the method prepared once here; this process only
    places their encoded blocks and publishes the file. The pixels are the same.
    """
    t0 = time.perf_counter()
    check_options(opts)
    check_destination(out, opts.overwrite, inputs=[pan, *ms, opts.weights], suffixes=COG_SUFFIXES)
    if opts.save_adapted:
        check_destination(
            opts.save_adapted, opts.overwrite, inputs=[pan, *ms, opts.weights, out],
            suffixes=(".safetensors",), flag="--save-adapted",
        )  # fmt: skip
    get_entry(opts.method)
    creation = get_profile(opts.profile)
    creation.update(opts.creation_options)
    nthreads = opts.threads or default_threads()
    creation.setdefault("NUM_THREADS", str(nthreads))
    with rasterio.Env(**GDAL_ENV):
        run = prepare_run(pan, ms, opts, progress, nthreads)
        scene, facts, ctx, prepared = run.scene, run.facts, run.ctx, run.prepared
        settings, stats, spec, convert = run.settings, run.stats, run.spec, run.convert
        out_dtype, nodata = spec.dtype, spec.nodata
        h, w = scene.out_shape
        writer = open_writer(
            out, spec, overwrite=opts.overwrite, creation_options=creation, tile=opts.tile
        )
        with writer:

            def encode(spec: TileSpec, fused: np.ndarray, valid: np.ndarray) -> Any:
                return writer.encode(convert(fused, valid), spec.row, spec.col)

            def sink(spec: TileSpec, encoded: Any) -> None:
                writer.put(encoded)

            if rows_map is None:
                execute(
                    scene,
                    prepared,
                    ctx,
                    sink,
                    settings=settings,
                    resampling=opts.resampling,
                    tile=opts.tile,
                    threads=nthreads,
                    progress=progress,
                    post=encode,
                    stats=stats,
                )
            else:
                tasks = row_tasks(pan, ms, opts, run, writer.remote_encoder())
                report = progress or (lambda phase, done, total: None)
                done, workers = 0, set()
                report("fuse", 0, h * w)
                for res in rows_map(fuse_rows, tasks, prepared):
                    for block in res.blocks:
                        writer.put(block)
                    stats.merge(res.stats)
                    workers.add(res.worker)
                    done += (res.rows[1] - res.rows[0]) * w
                    report("fuse", done, h * w)
            if stats.valid == 0:
                raise RasterFormatError(
                    f"no valid pixel where PAN {pan} and MS {', '.join(ms)} overlap: every "
                    "pixel is nodata; check the inputs or --nodata"
                )
            if progress:
                progress("write", 0, 1)
            writer.commit()
            if progress:
                progress("write", 1, 1)
    warnings = radiometry_warnings(scene, stats) + list(prepared.warnings)
    return FuseResult(
        output=str(out),
        method=opts.method,
        sensor=facts.sensor.name,
        ratio=scene.ratio,
        width=w,
        height=h,
        bands=scene.n_bands,
        dtype=out_dtype,
        seconds=time.perf_counter() - t0,
        bit_depth=facts.bits,
        bit_depth_source=facts.bit_depth.source,
        nodata=nodata,
        warnings=warnings,
        sensor_source=facts.sensor_source,
        split=None if rows_map is None else {"tasks": len(tasks), "workers": sorted(workers)},
        adaptation=getattr(prepared, "report", None) or None,
    )
