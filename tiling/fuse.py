"""``pansharp fuse`` as a library call: PAN/MS files in, a georeferenced COG out.

The method goes through the protocol (:mod:`models.protocol`) on the one executor
(:mod:`tiling.executor`): checked from headers, prepared (a classical fit pass, a
network's weights loaded) before the output is created, then streamed into the COG
writer. Nothing here prints: progress goes through the ``progress(phase, done, total)``
callback, and the CLI owns the progress bar.
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
from tiling.engine import Progress, default_threads
from tiling.executor import context_for, execute, prepare
from tiling.windows import TileSpec

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
        sensor = resolve_sensor(scene, opts.sensor)
        ctx = build_context(scene, sensor, opts, None)
        context = PrepareContext(ctx, sensor.name, None, opts.run_settings())
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
        check_bands_and_ratio(get_entry(opts.method).info, scene.n_bands, scene.ratio)
        depth = decide_bit_depth(scene, sensor, opts.bit_depth)
        bit_depth = depth.bits
        ctx = build_context(scene, sensor, opts, bit_depth)
        out_dtype = opts.dtype or scene.dtype
        nodata = output_nodata(scene, out_dtype)
        h, w = scene.out_shape
        settings = opts.run_settings()
        stats = LevelStats()
        context = context_for(
            scene,
            ctx,
            sensor.name,
            settings,
            resampling=opts.resampling,
            tile=opts.tile,
            threads=nthreads,
            progress=progress,
            stats=stats,
        )
        prepared = prepare(opts.method, scene, context)  # weights checked before any output
        tags = {
            "PANSHARP_METHOD": opts.method,
            "PANSHARP_SENSOR": sensor.name,
            "PANSHARP_RATIO": str(scene.ratio),
            **prepared.tags(),
        }
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
        with writer:

            def encode(spec: TileSpec, fused: np.ndarray, valid: np.ndarray) -> Any:
                block = to_output(fused, valid, out_dtype, nodata, clip_max)
                return writer.encode(block, spec.row, spec.col)

            def sink(spec: TileSpec, encoded: Any) -> None:
                writer.put(encoded)

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
