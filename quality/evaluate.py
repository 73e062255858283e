"""``pansharp evaluate`` as a library: score methods, or existing outputs, on any scene.

The protocol is ``/work/shared/protocols/quality.md`` (Vivone et al., "A new benchmark
based on recent advances in multispectral pansharpening", IEEE GRSM 2021, and its
MATLAB toolbox), run over scenes of any size without holding one whole:

- **reduced resolution** (quality.md A, Wald's protocol): the scene is degraded tile by
  tile into temporary GeoTIFFs (:mod:`quality.eval_degrade`: MS_LR = decimated MTF
  filter of the MS, PAN_LR = imresize of the PAN by 1/ratio), each method fuses the
  degraded pair through the normal engine (``tiling.fuse.run_method``, float64, EXP
  resampling) into a temporary float64 GeoTIFF, which is streamed back with the halo
  :class:`quality.ReducedAccumulator` needs, against the original MS as GT;
- **full resolution** (quality.md B): each method fuses the scene into a temporary
  float64 GeoTIFF, then tiles of F, PAN and EXP(MS) (``TileReader``, resampling
  ``exp``) with cores on the 32-pixel block grid and the ``pan_lowpass_halo`` feed
  :class:`quality.FullAccumulator`.

Temporary files live in one folder removed at the end, also on error or interrupt.
Result layout (issue 3): ``{"scene": {...}, "protocol": {"ratio", "sensor", ...},
"results": [{"method", "scale": "reduced", "q2n", "q", "sam", "ergas", "scc", "psnr",
"ssim"}, {"method", "scale": "full", "d_lambda", "d_s", "qnr", "d_lambda_k", "hqnr"}]}``.
A method that fails while running is reported as ``{"method", "scale", "error"}`` and
the other methods are still scored; inputs that cannot be evaluated raise before any
work, with one message naming the file or the option that fixes it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

from errors import (
    GeometryError,
    InputFileError,
    OptionError,
    PansharpError,
    QualityError,
    WeightsError,
)
from models.base import FuseContext
from models.registry import Entry, get_entry
from physics.sensors import Sensor, detect_sensor, get_sensor
from quality.accumulators import FullAccumulator, ReducedAccumulator, full_tiles, reduced_tiles
from quality.checks import BLOCK
from quality.eval_degrade import UNIT_GRID, ReducedGeometry, degrade_scene, reduced_geometry
from quality.eval_io import (
    Source,
    WindowReader,
    count_invalid,
    create_float_raster,
    file_sources,
    write_block,
)
from quality.protocols import (
    CUT_LEADING,
    CUT_TRAILING,
    FULL_KEYS,
    HIGHER_IS_BETTER,
    IDEAL,
    REDUCED_KEYS,
    min_reduced_size,
)
from quality.quicklook import HqnrMap, ReducedPreviews, render, rgb_bands
from raster.scene import Scene, open_scene
from tiling.engine import default_threads, parallel_map
from tiling.fuse import (
    GDAL_CACHE_MB,
    FuseOptions,
    build_context,
    check_method,
    resolve_bit_depth,
    resolve_sensor,
)
from tiling.reader import TileReader
from tiling.windows import TileSpec, plan_tiles

Progress = Callable[[str, int, int], None]
PROTOCOLS = ("both", "reduced", "full")
#: Methods whose own arithmetic re-interpolates with the 23-tap filter (besides the EXP
#: every method receives): EXP itself and the MTF-GLP family (quality.md, method notes).
TAP23_METHODS = ("exp", "mtf-glp", "mtf-glp-hpm", "mtf-glp-fs")
PROTOCOL_REF = "quality.md (Vivone et al., IEEE GRSM 2021 toolbox protocol)"


# --------------------------------------------------------------------------- helpers
def scales_of(protocol: str) -> tuple[str, ...]:
    """``both`` -> (reduced, full); ``reduced``/``full`` -> that one."""
    p = str(protocol).strip().lower()
    if p not in PROTOCOLS:
        raise OptionError(
            f"--protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}; "
            "use reduced (Wald's protocol), full (no reference) or both"
        )
    return ("reduced", "full") if p == "both" else (p,)


def check_interpolator(ratio: int, methods: Sequence[str], scales: Sequence[str]) -> None:
    """Refuse a ratio the 23-tap interpolator does not exist for, saying who needs it.

    quality.md: EXP is defined for power-of-two ratios only. Reduced resolution feeds
    every method EXP(MS_LR) (A.4); full resolution uses EXP(MS) in D_lambda and
    D_lambda_K and PAN_lp = EXP(imresize(PAN)) in D_S, QNR and HQNR (B).
    """
    if ratio >= 2 and not ratio & (ratio - 1):
        return
    needs = []
    if "reduced" in scales:
        own = [m for m in methods if m in TAP23_METHODS]
        extra = f"; {', '.join(own)} also re-interpolate with it" if own else ""
        needs.append(
            "the reduced-resolution protocol, which gives every method EXP(MS_LR) "
            f"(quality.md A.4){extra}"
        )
    if "full" in scales:
        needs.append(
            "the full-resolution indexes: EXP(MS) in D_lambda and D_lambda_K, and PAN_lp in "
            "D_S, QNR and HQNR"
        )
    raise QualityError(
        f"ratio {ratio} is not a power of two, and the 23-tap interpolator exists only for "
        f"ratios 2, 4, 8, ...; it is needed by {' and by '.join(needs)}. Score a result made "
        f"elsewhere with --reference GT.tif FUSED.tif --ratio {ratio} (the reduced-resolution "
        "indexes themselves need no interpolator)"
    )


def _method_names(methods: Sequence[str] | str) -> list[str]:
    names = [methods] if isinstance(methods, str) else list(methods)
    out: list[str] = []
    for n in names:
        key = str(n).strip().lower()
        if key and key not in out:
            out.append(key)
    if not out:
        raise OptionError(
            "name the methods to evaluate with -m, e.g. -m exp -m gsa -m mtf-glp "
            "(see pansharp models)"
        )
    return out


def _check_tile(tile: int) -> int:
    if isinstance(tile, bool) or int(tile) != tile or tile < BLOCK:
        raise OptionError(f"--tile {tile} must be an integer of at least {BLOCK} pixels")
    return int(tile)


def _score_tile(tile: int) -> int:
    """Full-resolution cores must sit on the 32-pixel block grid."""
    return max(BLOCK, (tile // BLOCK) * BLOCK)


@contextmanager
def _gdal_env(threads: int) -> Iterator[None]:
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, GDAL_NUM_THREADS=str(threads)):
        yield


@contextmanager
def _workdir() -> Iterator[str]:
    """A temporary folder for the intermediate GeoTIFFs, removed whatever happens."""
    folder = tempfile.mkdtemp(prefix="pansharp-evaluate-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _Bar:
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


def _finite(v: float) -> float | None:
    """JSON-safe number: non-finite values (a PSNR of identical images) become null."""
    return float(v) if math.isfinite(v) else None


def _result(method: str, scale: str, values: dict[str, float]) -> dict[str, Any]:
    keys = REDUCED_KEYS if scale == "reduced" else FULL_KEYS
    return {"method": method, "scale": scale, **{k: float(values[k]) for k in keys}}


def _failure(method: str, scale: str, exc: BaseException) -> dict[str, Any]:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, PansharpError):
        msg = f"{type(exc).__name__}: {msg}"
    return {"method": method, "scale": scale, "error": msg}


def _attempt(
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
        return _failure(method, scale, exc)


def _invalid_in_scene(
    scene: Scene, geom: ReducedGeometry | None, full_shape: tuple[int, int] | None
) -> None:
    """Refuse nodata in what is evaluated: the indexes have no mask (quality.md)."""
    checks: list[tuple[str, int, float | None, tuple[int, int, int, int] | None]] = []
    win = scene.window
    if full_shape is not None:
        checks.append(
            (
                scene.pan_path,
                1,
                scene.pan_nodata,
                (int(win.row_off), full_shape[0], int(win.col_off), full_shape[1]),
            )
        )
    if geom is not None:
        r = geom.ratio
        checks.append(
            (
                scene.pan_path,
                1,
                scene.pan_nodata,
                (geom.pan_row0, r * geom.rows, geom.pan_col0, r * geom.cols),
            )
        )
    for b in scene.bands:
        # full resolution reads the MS around the whole output window: check all of it
        window = None
        if geom is not None and full_shape is None:
            window = (geom.ms_row0, geom.rows, geom.ms_col0, geom.cols)
        checks.append((b.path, b.index, scene.ms_nodata, window))
    for path, band, nodata, window in checks:
        bad, total = count_invalid(path, band, nodata, window)
        if bad == total:
            raise QualityError(
                f"every pixel of {path} band {band} in the evaluated area is nodata"
                f"{f' (value {nodata:g})' if nodata is not None else ''}; there is nothing "
                "to evaluate: check the file and its nodata value"
            )
        if bad:
            raise QualityError(
                f"{bad} of {total} pixels of {path} band {band} are nodata in the evaluated "
                "area; the protocol's indexes have no mask (quality.md), so crop the scene "
                "to its data (e.g. gdal_translate -srcwin) before evaluating"
            )


def _check_block(rows: int, cols: int, what: str) -> None:
    if rows < BLOCK or cols < BLOCK:
        raise QualityError(
            f"{what} is {rows}x{cols} pixels, smaller than one {BLOCK}x{BLOCK} block: the "
            f"indexes are computed on {BLOCK}-pixel blocks; give a larger scene"
        )


def _check_reduced_size(rows: int, cols: int, what: str, hint: str) -> None:
    m = min_reduced_size()
    if rows < m or cols < m:
        raise QualityError(
            f"the reduced-resolution protocol needs at least {m}x{m} reference pixels (the "
            f"border cut drops {CUT_LEADING + CUT_TRAILING} lines and one {BLOCK}x{BLOCK} "
            f"block must remain), but {what} gives {rows}x{cols}{hint}"
        )


def full_grid(scene: Scene) -> tuple[int, int]:
    """The evaluated full-resolution grid: the output window cut to whole MS pixels."""
    h, w = scene.out_shape
    r = scene.ratio
    return h - h % r, w - w % r


# --------------------------------------------------------------------------- running
def _deep_weights(
    names: Sequence[str],
    entries: dict[str, Entry],
    sensor: Sensor,
    scene: Scene,
    weights: dict[str, str] | None,
) -> dict[str, str]:
    """Resolve the weights of every deep method up front (WeightsError names the fix)."""
    out: dict[str, str] = {}
    for n in names:
        if not entries[n].info.needs_weights or entries[n].info.family != "deep":
            continue
        from models.deep.weights import check_card, read_card, resolve_weights

        given = (weights or {}).get(n)
        try:
            path = resolve_weights(given, n, sensor.name)
        except WeightsError as exc:
            raise WeightsError(
                f"{exc} With pansharp evaluate: --weights {n}=FILE (or --sensor S for "
                "weights shipped for another sensor)."
            ) from None
        if not Path(path).is_file():
            raise InputFileError(f"weights file for {n} not found: {path} (check --weights)")
        check_card(read_card(path), path, n, scene.n_bands, scene.ratio, sensor.name)
        out[n] = str(path)
    return out


def _run_deep(
    scene: Scene,
    name: str,
    ctx: FuseContext,
    sink: Callable[[TileSpec, np.ndarray, np.ndarray], None],
    *,
    weights: str,
    sensor: str,
    tile: int,
    progress: Progress | None,
) -> None:
    """Stream ``scene`` through a deep network with weights (EXP input, as in training)."""
    from models.deep.runtime import predict
    from models.deep.weights import load_weights

    entry = get_entry(name)
    model, card = load_weights(weights, name, scene.n_bands, scene.ratio, sensor)
    h, w = scene.out_shape
    specs = plan_tiles(h, w, tile, entry.info.halo(scene.ratio))
    total = sum(s.pixels for s in specs)
    reader = TileReader(scene, ctx, resampling="exp", dtype=np.float32)
    report = progress or (lambda phase, done, tot: None)
    done = 0
    try:
        for spec in specs:
            t = reader.read(spec)
            out = predict(model, t.ms, t.pan, card.bit_depth)
            sink(spec, out[(slice(None), *t.core)].astype(np.float64), t.valid[t.core])
            done += spec.pixels
            report("fuse", done, total)
    finally:
        reader.close()


@dataclass
class _Job:
    """What every method run of one evaluation shares."""

    sensor: Sensor
    bit_depth: int | None
    tile: int
    threads: int
    folder: str
    progress: Progress | None
    weights: dict[str, str]


def _fuse_to_file(
    job: _Job,
    scene: Scene,
    name: str,
    ctx: FuseContext,
    path: str,
    bar: _Bar,
) -> None:
    """Run ``name`` over ``scene`` into a float64 GeoTIFF on the scene's output grid."""
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

        if name in job.weights:
            _run_deep(
                scene,
                name,
                ctx,
                sink,
                weights=job.weights[name],
                sensor=job.sensor.name,
                tile=job.tile,
                progress=bar,
            )
        else:
            from tiling.fuse import run_method

            run_method(
                scene,
                name,
                ctx,
                sink,
                resampling="exp",
                tile=job.tile,
                threads=job.threads,
                dtype=np.float64,
                progress=bar,
            )
    finally:
        ds.close()


def _score_reduced(
    job: _Job,
    shape: tuple[int, int, int],
    ratio: int,
    fused: WindowReader,
    gt: WindowReader,
    bar: _Bar,
    previews: ReducedPreviews | None,
    label: str,
) -> dict[str, float]:
    """Stream fused and GT tiles (core + 1 before, 31 after) into a ReducedAccumulator."""
    if job.bit_depth is None:
        raise OptionError(
            "PSNR and SSIM need the bit depth (peak 2^L - 1) and the data do not say it; "
            "give --bit-depth L"
        )
    b, rows, cols = shape
    acc = ReducedAccumulator(shape, ratio, job.bit_depth)
    t = job.tile
    tiles = reduced_tiles(rows, cols, t, t)
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

    parallel_map(tiles, work, consume, job.threads, max_inflight=job.threads + 2)
    return acc.result()


def _score_full(
    job: _Job,
    scene: Scene,
    ctx: FuseContext,
    fused: WindowReader,
    shape: tuple[int, int],
    bar: _Bar,
    heat: dict[str, np.ndarray] | None,
    label: str,
    what: str,
) -> dict[str, float]:
    """Stream F, PAN and EXP(MS) tiles (32-aligned cores + PAN_lp halo) into a FullAccumulator."""
    rows, cols = shape
    acc = FullAccumulator((scene.n_bands, rows, cols), scene.ratio, ctx.ms_gains)
    t = _score_tile(job.tile)
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
        parallel_map(tiles, work, consume, job.threads, max_inflight=job.threads + 2)
    finally:
        reader.close()
    out = acc.result()
    if hq is not None and heat is not None:
        heat[label] = hq.grid(acc)[0]
    return out


def _protocol_info(
    name: str, ratio: int, sensor: Sensor, bit_depth: int | None, gains: Sequence[float], tile: int
) -> dict[str, Any]:
    return {
        "name": name,
        "ratio": ratio,
        "sensor": sensor.name,
        "bit_depth": bit_depth,
        "ms_gains": [float(g) for g in gains],
        "resampling": "exp (23-tap)",
        "border_cut": [CUT_LEADING, CUT_TRAILING],
        "block": BLOCK,
        "tile": tile,
        "definition": PROTOCOL_REF,
    }


# --------------------------------------------------------------------------- public API
def evaluate_methods(
    pan: str,
    ms: Sequence[str] | str,
    methods: Sequence[str] | str,
    protocol: str = "both",
    sensor: str | None = None,
    ratio: int | None = None,
    bit_depth: int | None = None,
    tile: int = 512,
    threads: int | None = None,
    progress: Progress | None = None,
    quicklook: str | None = None,
    weights: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Score ``methods`` on the PAN/MS scene with quality.md's protocols; see the module doc.

    ``protocol``: ``both``, ``reduced`` (quality.md A) or ``full`` (quality.md B).
    ``sensor``: preset for the MTF gains (default: detected, else generic). ``ratio``:
    for ungeoreferenced inputs. ``bit_depth``: PSNR/SSIM peak (default: metadata, the
    sensor's, or the data type's). ``weights``: method -> weights file for deep models.
    ``quicklook``: PNG path. Returns the issue-3 JSON layout as a dict.
    """
    scales = scales_of(protocol)
    names = _method_names(methods)
    t = _check_tile(tile)
    nthreads = threads or default_threads()
    ms_list = [ms] if isinstance(ms, str) else list(ms)
    with _gdal_env(nthreads):
        scene = open_scene(pan, ms_list, ratio=ratio)
        sens = resolve_sensor(scene, sensor)
        L = resolve_bit_depth(scene, sens, bit_depth)
        check_interpolator(scene.ratio, names, scales)
        entries = {n: get_entry(n) for n in names}
        for n in names:
            check_method(entries[n].info, scene)
        h_out, w_out = scene.out_shape
        _check_block(h_out, w_out, f"the scene ({scene.pan_path} on the MS footprint)")
        geom = None
        fshape = None
        if "full" in scales:
            fshape = full_grid(scene)
            _check_block(*fshape, f"the scene ({scene.pan_path}, whole MS pixels)")
            if scene.n_bands < 2:
                raise QualityError(
                    "D_lambda compares band pairs: the full-resolution protocol needs an MS "
                    "with at least 2 bands; use --protocol reduced"
                )
        if "reduced" in scales:
            geom = reduced_geometry(scene)
            hint = "; use --protocol full or a larger scene" if "full" in scales else ""
            _check_reduced_size(geom.rows, geom.cols, f"the MS {scene.ms_paths[0]}", hint)
            if L is None:
                raise OptionError(
                    f"the MS {scene.ms_paths[0]} is {scene.dtype} without an NBITS tag, so the "
                    "bit depth for PSNR and SSIM (peak 2^L - 1) is unknown; give --bit-depth L"
                )
        deep = _deep_weights(names, entries, sens, scene, weights)
        _invalid_in_scene(scene, geom, fshape)
        ctx = build_context(scene, sens, FuseOptions(), L)
        report: dict[str, Any] = {
            "scene": {
                "pan": str(pan),
                "ms": [str(m) for m in ms_list],
                "bands": scene.n_bands,
                "dtype": scene.dtype,
                "pan_shape": list(scene.pan_shape),
                "ms_shape": list(scene.ms_shape),
                "full_grid": list(fshape) if fshape else None,
                "reduced_grid": list(geom.shape) if geom else None,
            },
            "protocol": _protocol_info(
                str(protocol).strip().lower(), scene.ratio, sens, L, ctx.ms_gains, t
            ),
            "results": [],
        }
        names_rgb = rgb_bands(scene.n_bands, sens.band_names)
        previews = ReducedPreviews(geom.rows, geom.cols, names_rgb) if quicklook and geom else None
        heat: dict[str, np.ndarray] | None = {} if quicklook and fshape else None
        with _workdir() as folder:
            job = _Job(sens, L, t, nthreads, folder, progress, deep)
            lr_scene = lr_ctx = None
            if geom is not None:
                pair = degrade_scene(
                    scene, geom, ctx.ms_gains, folder, tile=t, threads=nthreads, progress=progress
                )
                lr_scene = open_scene(pair.pan_lr, [pair.ms_lr])
                lr_ctx = replace(
                    build_context(lr_scene, sens, FuseOptions(), L), bit_depth=L, max_value=None
                )
            for n in names:
                passes = 2 if entries[n].info.needs_fit and n not in deep else 1
                if geom is not None and lr_scene is not None and lr_ctx is not None:
                    npx = geom.rows * geom.cols
                    bar = _Bar(
                        progress,
                        f"{n} reduced",
                        {"fit": npx if passes == 2 else 0, "fuse": npx, "score": npx},
                    )
                    report["results"].append(
                        _attempt(
                            n,
                            "reduced",
                            partial(
                                _reduced_one, job, n, scene, geom, lr_scene, lr_ctx, bar, previews
                            ),
                            previews.methods if previews else None,
                        )
                    )
                if fshape is not None:
                    npx = h_out * w_out
                    bar = _Bar(
                        progress,
                        f"{n} full",
                        {
                            "fit": npx if passes == 2 else 0,
                            "fuse": npx,
                            "score": fshape[0] * fshape[1],
                        },
                    )
                    report["results"].append(
                        _attempt(
                            n,
                            "full",
                            partial(_full_one, job, n, scene, ctx, fshape, bar, heat),
                            heat,
                        )
                    )
        if quicklook:
            render(quicklook, _title(scene.pan_path, sens, scene.ratio), previews, heat)
    return report


def _title(name: str, sensor: Sensor, ratio: int) -> str:
    return f"{Path(name).name}: sensor {sensor.name}, ratio {ratio} ({PROTOCOL_REF})"


def _reduced_one(
    job: _Job,
    name: str,
    scene: Scene,
    geom: ReducedGeometry,
    lr_scene: Scene,
    lr_ctx: FuseContext,
    bar: _Bar,
    previews: ReducedPreviews | None,
) -> dict[str, Any]:
    """Fuse the degraded pair with ``name`` and score it against the GT (quality.md A)."""
    path = os.path.join(job.folder, "fused_reduced.tif")
    try:
        _fuse_to_file(job, lr_scene, name, lr_ctx, path, bar)
        gt_sources = [Source(b.path, b.index) for b in scene.bands]
        with (
            WindowReader(file_sources(path)) as fused,
            WindowReader(gt_sources, (geom.ms_row0, geom.ms_col0)) as gt,
        ):
            values = _score_reduced(
                job,
                (scene.n_bands, geom.rows, geom.cols),
                geom.ratio,
                fused,
                gt,
                bar,
                previews,
                name,
            )
    finally:
        if os.path.exists(path):
            os.remove(path)
    return _result(name, "reduced", values)


def _full_one(
    job: _Job,
    name: str,
    scene: Scene,
    ctx: FuseContext,
    shape: tuple[int, int],
    bar: _Bar,
    heat: dict[str, np.ndarray] | None,
) -> dict[str, Any]:
    """Fuse the scene with ``name`` and score it without reference (quality.md B)."""
    path = os.path.join(job.folder, "fused_full.tif")
    try:
        _fuse_to_file(job, scene, name, ctx, path, bar)
        with WindowReader(file_sources(path)) as fused:
            values = _score_full(job, scene, ctx, fused, shape, bar, heat, name, name)
    finally:
        if os.path.exists(path):
            os.remove(path)
    return _result(name, "full", values)


def _open(path: str, role: str) -> Any:
    p = Path(path)
    if "://" not in path and not path.startswith("/vsi") and not p.exists():
        raise InputFileError(f"{role} file not found: {path} (check the path)")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputFileError(
            f"{role} file {path} is not a raster GDAL can read ({first}); give a GeoTIFF or VRT"
        ) from None


def _georef(ds: Any) -> Affine | None:
    t = ds.transform
    return t if (t != Affine.identity() or ds.crs is not None) else None


def _same_grid(a: Affine, b: Affine) -> bool:
    tol = 1e-6 * max(abs(a.a), abs(a.e), 1e-12)
    return all(abs(x - y) <= tol for x, y in zip(a[:6], b[:6], strict=True))


def evaluate_fused(
    fused_path: str,
    pan: str,
    ms: Sequence[str] | str,
    sensor: str | None = None,
    ratio: int | None = None,
    tile: int = 512,
    threads: int | None = None,
    progress: Progress | None = None,
    quicklook: str | None = None,
) -> dict[str, Any]:
    """Full-resolution indexes (quality.md B) of an existing output of any tool.

    ``fused_path`` must be on the PAN grid: the scene's output window (what ``pansharp
    fuse`` writes) or the whole PAN. The method in the result is the file's name.
    """
    t = _check_tile(tile)
    nthreads = threads or default_threads()
    ms_list = [ms] if isinstance(ms, str) else list(ms)
    name = Path(fused_path).name
    with _gdal_env(nthreads):
        scene = open_scene(pan, ms_list, ratio=ratio)
        sens = resolve_sensor(scene, sensor)
        check_interpolator(scene.ratio, [], ("full",))
        with _open(fused_path, "fused") as ds:
            fb, fh, fw = ds.count, ds.height, ds.width
            ftrans = _georef(ds)
            fnodata = ds.nodata
        if fb != scene.n_bands:
            raise QualityError(
                f"fused file {fused_path} has {fb} bands but the MS has {scene.n_bands}; "
                "compare an output with the MS's bands in the same order"
            )
        h_out, w_out = scene.out_shape
        win = scene.window
        if (fh, fw) == (h_out, w_out):
            origin, expect = (0, 0), scene.out_transform
        elif (fh, fw) == tuple(scene.pan_shape):
            origin, expect = (int(win.row_off), int(win.col_off)), scene.pan_transform
        else:
            raise QualityError(
                f"fused file {fused_path} is {fh}x{fw} pixels but the PAN grid where the MS "
                f"overlaps it is {h_out}x{w_out} (PAN {scene.pan_shape[0]}x"
                f"{scene.pan_shape[1]}); the output must be on the PAN grid"
            )
        pan_geo = scene.pan_transform != Affine.identity() or scene.crs is not None
        if ftrans is not None and pan_geo and not _same_grid(ftrans, expect):
            raise GeometryError(
                f"fused file {fused_path} has the right size but another geotransform than the "
                f"PAN {scene.pan_path}; warp it onto the PAN grid first"
            )
        fshape = full_grid(scene)
        _check_block(*fshape, f"the scene ({scene.pan_path}, whole MS pixels)")
        if scene.n_bands < 2:
            raise QualityError("D_lambda compares band pairs: the MS needs at least 2 bands")
        _invalid_in_scene(scene, None, fshape)
        for i in range(1, fb + 1):
            bad, total = count_invalid(
                fused_path, i, fnodata, (origin[0], fshape[0], origin[1], fshape[1])
            )
            if bad:
                raise QualityError(
                    f"{bad} of {total} pixels of {fused_path} band {i} are nodata or NaN; the "
                    "indexes have no mask (quality.md): fill or crop them before evaluating"
                )
        ctx = build_context(scene, sens, FuseOptions(), None)
        report: dict[str, Any] = {
            "scene": {
                "pan": str(pan),
                "ms": [str(m) for m in ms_list],
                "fused": str(fused_path),
                "bands": scene.n_bands,
                "dtype": scene.dtype,
                "pan_shape": list(scene.pan_shape),
                "ms_shape": list(scene.ms_shape),
                "full_grid": list(fshape),
                "reduced_grid": None,
            },
            "protocol": _protocol_info("full", scene.ratio, sens, None, ctx.ms_gains, t),
            "results": [],
        }
        job = _Job(sens, None, t, nthreads, "", progress, {})
        heat: dict[str, np.ndarray] | None = {} if quicklook else None
        bar = _Bar(progress, f"{name} full", {"score": fshape[0] * fshape[1]})
        with WindowReader(file_sources(fused_path), origin) as fused:
            values = _score_full(job, scene, ctx, fused, fshape, bar, heat, name, fused_path)
        report["results"].append(_result(name, "full", values))
        if quicklook:
            render(quicklook, _title(fused_path, sens, scene.ratio), None, heat)
    return report


def _reference_ratio(ratio: int | None, tags: dict[str, str], sensor: Sensor | None) -> int:
    if ratio is not None:
        if isinstance(ratio, bool) or int(ratio) != ratio or ratio < 1:
            raise OptionError(f"--ratio {ratio} must be a positive integer")
        return int(ratio)
    if tags.get("PANSHARP_RATIO", "").isdigit():
        return int(tags["PANSHARP_RATIO"])
    if sensor is not None and sensor.ratio:
        return int(sensor.ratio)
    raise OptionError(
        "ERGAS needs the PAN/MS ratio and neither the fused file (PANSHARP_RATIO) nor the "
        "sensor says it; give --ratio R"
    )


def _reference_bit_depth(bit_depth: int | None, ds: Any, sensor: Sensor | None, path: str) -> int:
    dt = np.dtype(ds.dtypes[0])
    if bit_depth is not None:
        if isinstance(bit_depth, bool) or not 1 <= int(bit_depth) <= 32:
            raise OptionError(f"--bit-depth {bit_depth} must be an integer from 1 to 32")
        return int(bit_depth)
    nbits = ds.tags(ns="IMAGE_STRUCTURE").get("NBITS") or ds.tags(1, ns="IMAGE_STRUCTURE").get(
        "NBITS"
    )
    if nbits:
        return int(nbits)
    if dt.kind in "iu":
        if sensor is not None and sensor.bit_depth and sensor.bit_depth <= dt.itemsize * 8:
            return int(sensor.bit_depth)
        return dt.itemsize * 8
    if sensor is not None and sensor.bit_depth:
        return int(sensor.bit_depth)
    raise OptionError(
        f"the reference {path} is {dt.name} without an NBITS tag, so the bit depth for PSNR "
        "and SSIM (peak 2^L - 1) is unknown; give --bit-depth L or --sensor"
    )


def evaluate_reference(
    gt_path: str,
    fused_path: str,
    ratio: int | None = None,
    sensor: str | None = None,
    bit_depth: int | None = None,
    tile: int = 512,
    threads: int | None = None,
    progress: Progress | None = None,
    quicklook: str | None = None,
) -> dict[str, Any]:
    """Reduced-resolution indexes (quality.md A.5-A.6) of a result made elsewhere.

    ``gt_path`` is the reference (the original MS), ``fused_path`` the fused degraded
    pair on the same grid; the same border cut is applied. ``ratio`` is ERGAS's (default:
    the fused file's PANSHARP_RATIO tag, else the sensor's); ``bit_depth`` PSNR/SSIM's.
    """
    t = _check_tile(tile)
    nthreads = threads or default_threads()
    name = Path(fused_path).name
    with _gdal_env(nthreads):
        with _open(gt_path, "reference") as g, _open(fused_path, "fused") as f:
            if f.count != g.count:
                raise QualityError(
                    f"fused file {fused_path} has {f.count} bands but the reference {gt_path} "
                    f"has {g.count}; compare images with the same bands in the same order"
                )
            if (f.height, f.width) != (g.height, g.width):
                raise QualityError(
                    f"fused file {fused_path} is {f.height}x{f.width} pixels but the reference "
                    f"{gt_path} is {g.height}x{g.width}; both must be on the same grid (crop "
                    "or resample first)"
                )
            ft, gtt = _georef(f), _georef(g)
            if ft is not None and gtt is not None and not _same_grid(ft, gtt):
                raise GeometryError(
                    f"fused file {fused_path} and reference {gt_path} have the same size but "
                    "different geotransforms; put them on the same grid first"
                )
            sens = get_sensor(sensor) if sensor else detect_sensor([Path(gt_path)], g.tags())
            r = _reference_ratio(ratio, f.tags(), sens)
            L = _reference_bit_depth(bit_depth, g, sens, gt_path)
            bands, rows, cols = g.count, g.height, g.width
            nodata = {gt_path: g.nodata, fused_path: f.nodata}
        _check_reduced_size(rows, cols, f"the reference {gt_path}", "")
        for path, nd in nodata.items():
            for i in range(1, bands + 1):
                bad, total = count_invalid(path, i, nd)
                if bad:
                    what = "every pixel" if bad == total else f"{bad} of {total} pixels"
                    raise QualityError(
                        f"{what} of {path} band {i} are nodata or NaN; the indexes have no "
                        "mask (quality.md): fill or crop them before evaluating"
                    )
        sens_out = sens or get_sensor("generic")
        report: dict[str, Any] = {
            "scene": {
                "reference": str(gt_path),
                "fused": str(fused_path),
                "bands": bands,
                "reduced_grid": [rows, cols],
                "full_grid": None,
            },
            "protocol": _protocol_info("reduced", r, sens_out, L, sens_out.gains(bands), t),
            "results": [],
        }
        job = _Job(sens_out, L, t, nthreads, "", progress, {})
        previews = (
            ReducedPreviews(rows, cols, rgb_bands(bands, sens_out.band_names))
            if quicklook
            else None
        )
        bar = _Bar(progress, f"{name} reduced", {"score": rows * cols})
        with (
            WindowReader(file_sources(fused_path)) as fr,
            WindowReader(file_sources(gt_path)) as gr,
        ):
            values = _score_reduced(job, (bands, rows, cols), r, fr, gr, bar, previews, name)
        report["results"].append(_result(name, "reduced", values))
        if quicklook:
            render(quicklook, _title(fused_path, sens_out, r), previews, None)
    return report


# --------------------------------------------------------------------------- outputs
CSV_COLUMNS = ("method", "scale", *REDUCED_KEYS, *FULL_KEYS, "error")


def failures(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The results that carry an error instead of scores."""
    return [r for r in report["results"] if "error" in r]


def to_json(report: dict[str, Any]) -> str:
    """The report as strict JSON (non-finite numbers, e.g. PSNR of identical images, null)."""

    def clean(x: Any) -> Any:
        if isinstance(x, float):
            return _finite(x)
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(report), indent=2, allow_nan=False) + "\n"


def to_csv(report: dict[str, Any]) -> str:
    """One row per (method, scale); indexes of the other scale left empty."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in report["results"]:
        row = {k: "" for k in CSV_COLUMNS}
        for k, v in r.items():
            if k in row:
                row[k] = repr(float(v)) if isinstance(v, float) else v
        w.writerow(row)
    return buf.getvalue()


def best_values(report: dict[str, Any], scale: str) -> dict[str, float]:
    """Per index, the best value among the methods scored at ``scale``."""
    keys = REDUCED_KEYS if scale == "reduced" else FULL_KEYS
    rows = [r for r in report["results"] if r["scale"] == scale and "error" not in r]
    best: dict[str, float] = {}
    for k in keys:
        vals = [r[k] for r in rows if not math.isnan(r[k])]
        if vals:
            best[k] = max(vals) if HIGHER_IS_BETTER[k] else min(vals)
    return best


__all__ = [
    "CSV_COLUMNS",
    "IDEAL",
    "PROTOCOLS",
    "best_values",
    "check_interpolator",
    "evaluate_fused",
    "evaluate_methods",
    "evaluate_reference",
    "failures",
    "full_grid",
    "scales_of",
    "to_csv",
    "to_json",
]
