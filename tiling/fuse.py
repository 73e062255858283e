"""``pansharp fuse`` as a library call: PAN/MS files in, a georeferenced COG out.

Two streaming passes over the tiles when the method has global coefficients (pass 1
sums each tile's partial statistics, pass 2 fuses with the finished coefficients), one
otherwise. Nothing here prints: progress goes through the ``progress(phase, done,
total)`` callback, and the CLI owns the progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio

from errors import OptionError, RasterFormatError
from models.base import FuseContext, Tile
from models.registry import ModelInfo, create_model, get_entry
from physics.kernels import get_kernel
from physics.sensors import Sensor, detect_sensor, get_sensor
from raster.cog import RasterSpec, open_writer
from raster.destination import COG_SUFFIXES, check_destination
from raster.profiles import get_profile
from raster.radiometry import (
    LevelStats,
    colour_from_names,
    decide_bit_depth,
    output_nodata,
    radiometry_warnings,
)
from raster.scene import Scene, open_scene
from tiling.allocator import keep_freed_memory
from tiling.engine import Progress, default_threads, parallel_map, sum_partials
from tiling.reader import TileReader
from tiling.windows import TileSpec, plan_tiles

# GDAL's block cache, in bytes (rasterio passes GDAL_CACHEMAX to GDALSetCacheMax64): 128
# bytes, i.e. none. The tile reader keeps its own MS strips, and a block cache of 128 MB
# cost 63 MB of peak RSS for no speed here; memory must not grow with the scene.
GDAL_CACHE_BYTES = 128


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
    # deep models only (tiling.deep): weights file (None: the registry's default for the
    # model and sensor), device, batch size (None: auto), precision, patch size and
    # overlap in PAN pixels (None: from the receptive field)
    weights: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    precision: str = "fp32"
    patch: int | None = None
    overlap: int | None = None


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

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def megapixels_per_second(self) -> float:
        return self.pixels / 1e6 / max(self.seconds, 1e-9)


def resolve_sensor(scene: Scene, name: str | None) -> Sensor:
    """``--sensor`` if given, else detected from metadata, else the generic preset."""
    if name:
        return get_sensor(name)
    from pathlib import Path

    paths = [Path(p) for p in [scene.pan_path, *scene.ms_paths]]
    found = detect_sensor(paths, scene.tags, scene.n_bands)
    return found or get_sensor("generic")


def resolve_bit_depth(scene: Scene, sensor: Sensor, explicit: int | None) -> int | None:
    """The bit depth by the rules of :mod:`raster.radiometry` (``decide_bit_depth``)."""
    return decide_bit_depth(scene, sensor, explicit).bits


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
    n = scene.n_bands
    if opts.band_weights is not None:
        if len(opts.band_weights) != n:
            raise OptionError(
                f"--band-weights has {len(opts.band_weights)} values but the MS has {n} bands; "
                f"give {n} comma-separated weights"
            )
        weights = tuple(float(w) for w in opts.band_weights)
    else:
        weights = sensor.weights_for(scene.descriptions)
    max_value = float(2**bit_depth - 1) if bit_depth else None
    return FuseContext(
        ratio=scene.ratio,
        n_bands=n,
        ms_gains=sensor.gains_for(scene.descriptions),
        pan_gain=sensor.pan_gnyq,
        weights=weights,
        dtype=scene.dtype,
        bit_depth=bit_depth,
        max_value=max_value,
        options=dict(opts.method_options),
    )


def check_method(info: ModelInfo, scene: Scene) -> None:
    n = scene.n_bands
    if n < info.min_bands or (info.max_bands is not None and n > info.max_bands):
        hi = info.max_bands if info.max_bands is not None else "any"
        raise OptionError(
            f"method {info.name!r} takes {info.min_bands} to {hi} MS bands, the MS has {n}; "
            "choose another -m (see pansharp models)"
        )
    if info.ratios is not None and scene.ratio not in info.ratios:
        raise OptionError(
            f"method {info.name!r} supports ratios {list(info.ratios)}, the scene has "
            f"{scene.ratio}; choose another -m"
        )


def run_method(
    scene: Scene,
    method_name: str,
    ctx: FuseContext,
    sink: Callable[..., None],
    *,
    resampling: str = "exp",
    tile: int = 512,
    threads: int | None = None,
    dtype: Any = np.float32,
    progress: Progress | None = None,
    post: Callable[[TileSpec, np.ndarray, np.ndarray], Any] | None = None,
    deep: Any = None,
    stats: LevelStats | None = None,
) -> None:
    """Stream ``scene`` through a classical method, or a deep one loaded in ``deep``
    (:func:`tiling.deep.load_deep`; the deep engine sends full-width strips aligned to
    ``tile`` rows and calls ``post`` in this thread).

    Calls ``sink(spec, fused_core, valid_core)`` in this thread for every tile; with
    ``post``, the worker thread first runs ``post(spec, fused_core, valid_core)`` (e.g.
    conversion and compression, so they run in parallel too) and the sink receives
    ``sink(spec, post_result)``.
    """
    entry = get_entry(method_name)
    check_method(entry.info, scene)
    get_kernel(resampling)
    if entry.info.family == "deep":
        from tiling.deep import run_deep_method

        run_deep_method(
            scene, method_name, ctx, sink, deep, resampling, tile, progress, post, stats
        )
        return
    method = create_model(method_name, **ctx.options)
    keep_freed_memory()  # tile buffers are reused, not faulted in again (tiling.allocator)
    halo = entry.info.halo(scene.ratio)
    h, w = scene.out_shape
    specs = plan_tiles(h, w, tile, halo)
    total = sum(s.pixels for s in specs)
    nthreads = threads or default_threads()
    reader = TileReader(scene, ctx, resampling=resampling, dtype=dtype, stats=stats)
    report = progress or (lambda phase, done, tot: None)
    try:
        coeffs = None
        if entry.info.needs_fit:
            totals: dict[str, Any] = {}
            done = [0]

            def fit_consume(spec: TileSpec, part: dict[str, Any]) -> None:
                sum_partials(totals, part)
                done[0] += spec.pixels
                report("fit", done[0], total)

            report("fit", 0, total)

            # in tile order: float sums added in completion order differ in their last bits
            # from run to run, and so could a pixel (tiling.engine.parallel_map)
            def fit(spec: TileSpec) -> dict[str, Any]:
                return method.fit_tile(reader.read(spec))

            parallel_map(specs, fit, fit_consume, nthreads, ordered=True)
            coeffs = method.fit_finish(totals, ctx)

        def work(spec: TileSpec) -> Any:
            t: Tile = reader.read(spec)
            out = method.apply(t, coeffs)
            fused, valid = out[(slice(None), *t.core)], t.valid[t.core]
            return (post(spec, fused, valid),) if post else (fused, valid)

        done2 = [0]

        def consume(spec: TileSpec, res: tuple[Any, ...]) -> None:
            sink(spec, *res)
            done2[0] += spec.pixels
            report("fuse", done2[0], total)

        report("fuse", 0, total)
        parallel_map(specs, work, consume, nthreads, max_inflight=nthreads + 2)
    finally:
        reader.close()


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


def fuse_files(
    pan: str,
    ms: list[str],
    out: str,
    opts: FuseOptions,
    progress: Progress | None = None,
) -> FuseResult:
    """Fuse PAN and MS files into the COG ``out``; see the module docstring."""
    t0 = time.perf_counter()
    check_options(opts)
    check_destination(out, opts.overwrite, inputs=[pan, *ms, opts.weights], suffixes=COG_SUFFIXES)
    get_entry(opts.method)
    creation = get_profile(opts.profile)
    creation.update(opts.creation_options)
    nthreads = opts.threads or default_threads()
    creation.setdefault("NUM_THREADS", str(nthreads))
    # GDAL's own decoding threads: one. The tiles are read by ``nthreads`` workers already;
    # a GDAL pool on top only adds wake-ups (8000^2 Brovey, 2 cores: 0.5 s less CPU).
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES, GDAL_NUM_THREADS="1"):
        scene = open_scene(pan, ms, ratio=opts.ratio, nodata=opts.nodata)
        sensor = resolve_sensor(scene, opts.sensor)
        check_method(get_entry(opts.method).info, scene)
        depth = decide_bit_depth(scene, sensor, opts.bit_depth)
        bit_depth = depth.bits
        ctx = build_context(scene, sensor, opts, bit_depth)
        out_dtype = opts.dtype or scene.dtype
        nodata = output_nodata(scene, out_dtype)
        h, w = scene.out_shape
        tags = {
            "PANSHARP_METHOD": opts.method,
            "PANSHARP_SENSOR": sensor.name,
            "PANSHARP_RATIO": str(scene.ratio),
        }
        deep = None
        if get_entry(opts.method).info.family == "deep":  # weights checked before any output
            from tiling.deep import load_for_fuse

            deep = load_for_fuse(scene, sensor.name, opts, bit_depth)
            tags.update(deep.tags())
        if bit_depth:
            tags["PANSHARP_BIT_DEPTH"] = str(bit_depth)
        descriptions = _descriptions(scene, sensor)
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
        writer = open_writer(
            out, spec, overwrite=opts.overwrite, creation_options=creation, tile=opts.tile
        )
        clip_max = ctx.max_value if np.dtype(out_dtype).kind in "iu" else None
        stats = LevelStats()
        with writer:

            def encode(spec: TileSpec, fused: np.ndarray, valid: np.ndarray) -> Any:
                block = to_output(fused, valid, out_dtype, nodata, clip_max)
                return writer.encode(block, spec.row, spec.col)

            def sink(spec: TileSpec, encoded: Any) -> None:
                writer.put(encoded)

            run_method(
                scene,
                opts.method,
                ctx,
                sink,
                resampling=opts.resampling,
                tile=opts.tile,
                threads=nthreads,
                progress=progress,
                post=encode,
                deep=deep,
                stats=stats,
            )
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
    warnings = radiometry_warnings(scene, stats)
    if deep is not None:
        warnings += deep.warnings
    return FuseResult(
        output=str(out),
        method=opts.method,
        sensor=sensor.name,
        ratio=scene.ratio,
        width=w,
        height=h,
        bands=scene.n_bands,
        dtype=out_dtype,
        seconds=time.perf_counter() - t0,
        bit_depth=bit_depth,
        bit_depth_source=depth.source,
        nodata=nodata,
        warnings=warnings,
    )


def _descriptions(scene: Scene, sensor: Sensor) -> list[str | None]:
    """MS band descriptions; where a band has none, the sensor's band name for it
    (:meth:`physics.sensors.Sensor.names_for`: a 4-band WorldView-2 product is blue,
    green, red, NIR1)."""
    names = sensor.names_for(scene.n_bands, scene.descriptions)
    return [d or n for d, n in zip(scene.descriptions, names, strict=True)]
