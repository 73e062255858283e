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

Nodata: the indexes have no mask, so every form scores the rectangle that holds data in
all its inputs (a nodata border, NaN included, is left out; holes are refused), exactly
as if the scene had been cropped to it (:mod:`quality.valid_area`); ``scene.valid_area``
and ``scene.nodata`` say what was left out and by which rule.

Temporary files live in one folder removed at the end, also on error or interrupt.
Result layout (issue 3): ``{"scene": {...}, "protocol": {"ratio", "sensor",
"sensor_source", "bit_depth", "bit_depth_source", ...}, "results": [{"method", "scale":
"reduced", "q2n", "q", "sam", "ergas", "scc", "psnr", "ssim"}, {"method", "scale":
"full", "d_lambda", "d_s", "qnr", "d_lambda_k", "hqnr"}], "warnings": [...]}``.
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
from rasterio.windows import Window

from errors import (
    GeometryError,
    InputFileError,
    OptionError,
    PansharpError,
    QualityError,
    UnknownNameError,
    WeightsError,
)
from models.base import FuseContext
from models.protocol import PrepareContext, RunSettings
from models.registry import check_bands_and_ratio, get_entry, refuse_run_options
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
from quality.valid_area import (
    Area,
    Layer,
    ValidScan,
    file_layer,
    ms_layer,
    nodata_summary,
    scan_valid,
)
from raster.radiometry import decide_bit_depth
from raster.scene import Scene, open_scene
from tiling.engine import default_threads, parallel_map
from tiling.executor import check, run_method
from tiling.fuse import GDAL_CACHE_BYTES, FuseOptions, build_context
from tiling.reader import TileReader
from tiling.windows import TileSpec

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
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES, GDAL_NUM_THREADS=str(threads)):
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


def _invalid_in_geometry(scene: Scene, geom: ReducedGeometry) -> None:
    """Refuse nodata inside the reduced-resolution GT and its PAN blocks.

    :func:`_valid_area` has already cut the scene to the rectangle that holds data on the
    PAN grid; this checks the GT at MS scale (the MTF filter of Wald's degradation reads
    every GT pixel), which the PAN-scale scan sees only through nearest samples.
    """
    r = geom.ratio
    checks: list[tuple[str, str, int, float | None, tuple[int, int, int, int]]] = [
        (
            "PAN",
            scene.pan_path,
            1,
            scene.pan_nodata,
            (geom.pan_row0, r * geom.rows, geom.pan_col0, r * geom.cols),
        )
    ]
    for b in scene.bands:
        checks.append(
            (
                "MS",
                b.path,
                b.index,
                scene.ms_nodata,
                (geom.ms_row0, geom.rows, geom.ms_col0, geom.cols),
            )
        )
    for role, path, band, nodata, window in checks:
        bad, total = count_invalid(path, band, nodata, window)
        if bad:
            raise QualityError(
                f"{bad} of {total} pixels of the {role} {path} band {band} are nodata inside the "
                f"reduced-resolution reference (rows {window[0]}..{window[0] + window[1]}, cols "
                f"{window[2]}..{window[2] + window[3]}); pansharp leaves out a nodata border, "
                "but the protocol's indexes have no mask for holes (quality.md): crop the scene "
                "to its data (e.g. gdal_translate -srcwin) before evaluating"
            )


# --------------------------------------------------------------------------- valid area
def _scene_layers(scene: Scene, origin: tuple[int, int], cols: int) -> list[Layer]:
    """PAN and MS (at PAN scale) as layers of a grid whose pixel (0, 0) is PAN pixel
    ``origin`` (absolute PAN coordinates)."""
    return [
        file_layer("PAN", scene.pan_path, scene.pan_nodata, origin, cols, [1]),
        ms_layer(
            [(b.path, b.index) for b in scene.bands],
            scene.ms_nodata,
            scene.ms_shape,
            scene.row_map,
            scene.col_map,
            origin,
            cols,
            scene.warp,
        ),
    ]


def _restrict(scene: Scene, area: Area) -> Scene:
    """The scene whose output window is ``area`` (in output-window coordinates).

    Everything downstream (tile plans, the reader, the output transform) follows the
    window; the MS is still read around it from the whole file, as at the scene edge.
    """
    win = scene.window
    sub = Window(int(win.col_off) + area.col0, int(win.row_off) + area.row0, area.cols, area.rows)
    return replace(scene, window=sub)


def _restrict_geometry(geom: ReducedGeometry, area: Area) -> ReducedGeometry:
    """The GT crop whose PAN blocks lie inside ``area`` (absolute PAN coordinates).

    GT pixel i has the PAN block pan_row0 + ratio*i + [0, ratio); the usable GT pixels
    are those whose blocks lie inside the area, their count cut to a multiple of the
    ratio (quality.md A: the GT side is a multiple of the ratio).
    """
    r = geom.ratio

    def axis(pan0: int, n: int, lo: int, hi: int) -> tuple[int, int]:
        i0 = max(0, -(-(lo - pan0) // r))
        i1 = min(n, (hi - pan0) // r)
        return i0, max(i1 - i0, 0) // r * r

    i0, rows = axis(geom.pan_row0, geom.rows, area.row0, area.row1)
    j0, cols = axis(geom.pan_col0, geom.cols, area.col0, area.col1)
    return replace(
        geom,
        ms_row0=geom.ms_row0 + i0,
        ms_col0=geom.ms_col0 + j0,
        pan_row0=geom.pan_row0 + r * i0,
        pan_col0=geom.pan_col0 + r * j0,
        rows=rows,
        cols=cols,
        transform=geom.transform @ Affine.translation(j0, i0),
    )


def _area_info(scan: ValidScan, area: Area, shift: tuple[int, int], of: str) -> dict[str, Any]:
    """The report's ``valid_area``: the scored window in ``of``'s pixel coordinates."""
    a = area.shifted(*shift)
    total = scan.shape[0] * scan.shape[1]
    return {
        "rows": [a.row0, a.row1],
        "cols": [a.col0, a.col1],
        "of": of,
        "left_out_px": total - area.pixels,
    }


def _nodata_info(scan: ValidScan, warnings: list[str], own: bool = False) -> dict[str, str]:
    """Per input, the nodata rule and the pixels it removed; warns of all-zero pixels that
    were scored as data because they lie inside the valid area, unless the fused file is
    ``own`` (a ``pansharp fuse`` output, tagged PANSHARP_METHOD: it declares nodata
    whenever it writes any, so its all-zero pixels are dark pixels clipped at 0)."""
    if scan.zero_inside and not own:
        lay = next(lay for lay in scan.layers if lay.zero_rule)
        warnings.append(
            f"{scan.zero_inside} pixels inside the valid area of {lay.path} are 0 in every "
            "band and were scored as data (the file declares no nodata); if they are "
            "nodata, declare it (gdal_edit -a_nodata 0) and crop them away"
        )
    return {lay.role: nodata_summary(scan, lay.role) or "none" for lay in scan.layers}


# --------------------------------------------------------------------------- sensor, bits
@dataclass(frozen=True)
class _Choice:
    """A setting and the rule that decided it (reported as ``*_source``)."""

    value: Any
    source: str | None


def _detected(scene: Scene) -> Sensor | None:
    """The sensor from the inputs' metadata, as ``tiling.fuse.resolve_sensor`` finds it."""
    paths = [Path(p) for p in [scene.pan_path, *scene.ms_paths]]
    return detect_sensor(paths, scene.tags, scene.n_bands)


def _tagged_sensor(tags: dict[str, str], path: str, warnings: list[str]) -> Sensor | None:
    tag = str(tags.get("PANSHARP_SENSOR", "")).strip()
    if not tag:
        return None
    try:
        return get_sensor(tag)
    except UnknownNameError:
        warnings.append(
            f"the PANSHARP_SENSOR tag of {path} names an unknown sensor {tag!r}; ignored"
        )
        return None


def choose_sensor(
    option: str | None,
    tags: dict[str, str],
    fused_path: str | None,
    detect: Callable[[], Sensor | None],
    warnings: list[str],
) -> _Choice:
    """The sensor of an evaluation (MTF gains): ``--sensor``, else the fused file's
    ``PANSHARP_SENSOR`` tag (the sensor ``pansharp fuse`` used), else detected from the
    inputs' metadata, else generic. An option that contradicts the tag wins and a
    warning says so. Sources: ``option``, ``fused tags``, ``detected``, ``generic``."""
    tagged = _tagged_sensor(tags, fused_path, warnings) if fused_path else None
    if option:
        chosen = get_sensor(option)
        if tagged is not None and tagged.name != chosen.name:
            warnings.append(
                f"--sensor {chosen.name} overrides the PANSHARP_SENSOR tag of {fused_path} "
                f"({tagged.name}, the sensor it was fused with); scored with {chosen.name}"
            )
        return _Choice(chosen, "option")
    if tagged is not None:
        return _Choice(tagged, "fused tags")
    found = detect()
    if found is not None:
        return _Choice(found, "detected")
    return _Choice(get_sensor("generic"), "generic")


def _tagged_bit_depth(tags: dict[str, str], path: str, warnings: list[str]) -> int | None:
    tag = str(tags.get("PANSHARP_BIT_DEPTH", "")).strip()
    if not tag:
        return None
    if tag.isdigit() and 1 <= int(tag) <= 32:
        return int(tag)
    warnings.append(f"the PANSHARP_BIT_DEPTH tag of {path} is {tag!r}, not 1..32; ignored")
    return None


def choose_bit_depth(
    option: int | None,
    tags: dict[str, str],
    fused_path: str | None,
    fallback: Callable[[int | None], _Choice],
    warnings: list[str],
) -> _Choice:
    """The bit depth L (PSNR/SSIM peak 2^L - 1): ``--bit-depth``, else the fused file's
    ``PANSHARP_BIT_DEPTH`` tag, else ``fallback`` (metadata, sensor, data type). An
    option that contradicts the tag wins and a warning says so."""
    tagged = _tagged_bit_depth(tags, fused_path, warnings) if fused_path else None
    if option is not None:
        chosen = fallback(option)
        if tagged is not None and tagged != chosen.value:
            warnings.append(
                f"--bit-depth {chosen.value} overrides the PANSHARP_BIT_DEPTH tag of "
                f"{fused_path} ({tagged})"
            )
        return chosen
    if tagged is not None:
        return _Choice(tagged, "fused tags")
    return fallback(None)


def _scene_bit_depth(scene: Scene, sensor: Sensor) -> Callable[[int | None], _Choice]:
    """The bit depth by the rules ``pansharp fuse`` applies (``raster.radiometry``), with
    the rule that decided it; an explicit value is reported as ``option``."""

    def fallback(option: int | None) -> _Choice:
        depth = decide_bit_depth(scene, sensor, option)
        return _Choice(depth.bits, "option" if option is not None else depth.source)

    return fallback


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
def _check_methods(
    names: Sequence[str],
    scene: Scene,
    ctx: FuseContext,
    sensor: Sensor,
    bit_depth: int | None,
    weights: dict[str, str] | None,
) -> None:
    """Phase 1 of the method protocol for every method, before any work: a weights file
    that is missing or does not fit names the fix (``--weights METHOD=FILE``)."""
    given = weights or {}
    for n in given:
        if n in names:
            refuse_run_options(n, ["weights"], {"weights": f"--weights {n}=FILE"})
    for n in names:
        context = PrepareContext(ctx, sensor.name, bit_depth, RunSettings(weights=given.get(n)))
        try:
            check(n, scene, context)
        except WeightsError as exc:
            raise WeightsError(
                f"{exc} With pansharp evaluate: --weights {n}=FILE (or --sensor S for "
                "weights shipped for another sensor)."
            ) from None


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

        # the executor fuse uses: same tiles or patches, blending, normalisation, device
        run_method(
            scene,
            name,
            ctx,
            sink,
            sensor=job.sensor.name,
            settings=RunSettings(weights=job.weights.get(name)),
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
    name: str,
    ratio: int,
    sensor: _Choice,
    bit_depth: _Choice,
    gains: Sequence[float],
    tile: int,
) -> dict[str, Any]:
    return {
        "name": name,
        "ratio": ratio,
        "sensor": sensor.value.name,
        "sensor_source": sensor.source,
        "bit_depth": bit_depth.value,
        "bit_depth_source": bit_depth.source,
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
    warnings: list[str] = []
    with _gdal_env(nthreads):
        scene = open_scene(pan, ms_list, ratio=ratio)
        sens_c = choose_sensor(sensor, {}, None, partial(_detected, scene), warnings)
        sens = sens_c.value
        bits_c = _scene_bit_depth(scene, sens)(bit_depth)
        L = bits_c.value
        check_interpolator(scene.ratio, names, scales)
        entries = {n: get_entry(n) for n in names}
        for n in names:
            check_bands_and_ratio(entries[n].info, scene.n_bands, scene.ratio)
        h_out, w_out = scene.out_shape
        _check_block(h_out, w_out, f"the scene ({scene.pan_path} on the MS footprint)")
        if "full" in scales and scene.n_bands < 2:
            raise QualityError(
                "D_lambda compares band pairs: the full-resolution protocol needs an MS "
                "with at least 2 bands; use --protocol reduced"
            )
        if "reduced" in scales and L is None:
            raise OptionError(
                f"the MS {scene.ms_paths[0]} is {scene.dtype} without an NBITS tag, so the "
                "bit depth for PSNR and SSIM (peak 2^L - 1) is unknown; give --bit-depth L"
            )
        ctx = build_context(scene, sens, FuseOptions(), L)
        _check_methods(names, scene, ctx, sens, L, weights)
        # the rectangle that holds data in the PAN and the MS (quality.valid_area)
        win = scene.window
        origin = (int(win.row_off), int(win.col_off))
        scan = scan_valid(h_out, w_out, _scene_layers(scene, origin, w_out))
        area = scan.check(f"the PAN grid where the MS overlaps it ({scene.pan_path})")
        masked = area != Area(0, h_out, 0, w_out)
        where = f" inside its valid area ({area.shifted(*origin).describe()} of the PAN)"
        geom = None
        fshape = None
        full_scene = scene
        if "full" in scales:
            if masked:
                fa = area.snapped(scene.ratio)
                full_scene = _restrict(scene, fa)
                fshape = (fa.rows, fa.cols)
            else:
                fshape = full_grid(scene)
            _check_block(
                *fshape,
                f"the scene ({scene.pan_path}, whole MS pixels{where if masked else ''})",
            )
        if "reduced" in scales:
            geom = reduced_geometry(scene)
            if masked:
                geom = _restrict_geometry(geom, area.shifted(*origin))
            hint = "; use --protocol full or a larger scene" if "full" in scales else ""
            what = f"the MS {scene.ms_paths[0]}" + (where if masked else "")
            _check_reduced_size(geom.rows, geom.cols, what, hint)
            _invalid_in_geometry(scene, geom)
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
                "valid_area": _area_info(scan, area, origin, str(scene.pan_path)),
                "nodata": _nodata_info(scan, warnings),
            },
            "protocol": _protocol_info(
                str(protocol).strip().lower(), scene.ratio, sens_c, bits_c, ctx.ms_gains, t
            ),
            "results": [],
            "warnings": warnings,
        }
        names_rgb = rgb_bands(scene.n_bands, sens.band_names)
        previews = ReducedPreviews(geom.rows, geom.cols, names_rgb) if quicklook and geom else None
        heat: dict[str, np.ndarray] | None = {} if quicklook and fshape else None
        with _workdir() as folder:
            job = _Job(sens, L, t, nthreads, folder, progress, dict(weights or {}))
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
                passes = 2 if entries[n].info.needs_fit else 1
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
                    npx = full_scene.out_shape[0] * full_scene.out_shape[1]
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
                            partial(_full_one, job, n, full_scene, ctx, fshape, bar, heat),
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
    bit_depth: int | None = None,
) -> dict[str, Any]:
    """Full-resolution indexes (quality.md B) of an existing output of any tool.

    ``fused_path`` must be on the PAN grid: the scene's output window (what ``pansharp
    fuse`` writes) or the whole PAN. The method in the result is the file's name.

    Sensor (MTF gains of D_lambda_K) and bit depth: ``sensor`` / ``bit_depth``, else
    the file's ``PANSHARP_SENSOR`` / ``PANSHARP_BIT_DEPTH`` tags (``pansharp fuse``
    writes them), else the inputs' metadata; ``protocol.sensor_source`` and
    ``bit_depth_source`` say which rule decided, and ``warnings`` lists options that
    contradict the tags. The bit depth is reported only: no full-resolution index uses
    it. A nodata border (declared nodata, NaN, or all-zero pixels of a file without
    declared nodata) is left out: the scene is scored on the rectangle of whole MS pixels
    that holds data in PAN, MS and the fused file (:mod:`quality.valid_area`).
    """
    t = _check_tile(tile)
    nthreads = threads or default_threads()
    ms_list = [ms] if isinstance(ms, str) else list(ms)
    name = Path(fused_path).name
    warnings: list[str] = []
    with _gdal_env(nthreads):
        scene = open_scene(pan, ms_list, ratio=ratio)
        check_interpolator(scene.ratio, [], ("full",))
        with _open(fused_path, "fused") as ds:
            fb, fh, fw = ds.count, ds.height, ds.width
            ftrans = _georef(ds)
            fnodata = ds.nodata
            tags = dict(ds.tags())
        sens_c = choose_sensor(sensor, tags, fused_path, partial(_detected, scene), warnings)
        sens = sens_c.value
        bits_c = choose_bit_depth(
            bit_depth, tags, fused_path, _scene_bit_depth(scene, sens), warnings
        )
        tag_ratio = str(tags.get("PANSHARP_RATIO", "")).strip()
        if tag_ratio.isdigit() and int(tag_ratio) != scene.ratio:
            warnings.append(
                f"the PANSHARP_RATIO tag of {fused_path} is {tag_ratio} but the PAN/MS pair "
                f"has ratio {scene.ratio}: the file was fused from another pair"
            )
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
        # valid area: pixels with data in PAN, MS (at PAN scale) and the fused file
        pan_origin = (int(win.row_off), int(win.col_off))
        layers = _scene_layers(scene, pan_origin, fshape[1])
        layers.append(file_layer("fused", fused_path, fnodata, origin, fshape[1], zero_rule=True))
        scan = scan_valid(*fshape, layers)
        area = scan.check(f"the evaluated grid ({fshape[0]}x{fshape[1]} pixels of {fused_path})")
        if area != Area(0, fshape[0], 0, fshape[1]):
            area = area.snapped(scene.ratio)
            _check_block(
                area.rows,
                area.cols,
                f"the valid area of {fused_path} ({area.shifted(*origin).describe()}, whole "
                "MS pixels)",
            )
            scene = _restrict(scene, area)
            fshape = (area.rows, area.cols)
        ctx = build_context(scene, sens, FuseOptions(), None)
        nodata = _nodata_info(scan, warnings, "PANSHARP_METHOD" in tags)
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
                "valid_area": _area_info(scan, area, origin, str(fused_path)),
                "fused_nodata": nodata["fused"],
                "nodata": nodata,
            },
            "protocol": _protocol_info("full", scene.ratio, sens_c, bits_c, ctx.ms_gains, t),
            "results": [],
            "warnings": warnings,
        }
        job = _Job(sens, None, t, nthreads, "", progress, {})
        heat: dict[str, np.ndarray] | None = {} if quicklook else None
        bar = _Bar(progress, f"{name} full", {"score": fshape[0] * fshape[1]})
        f_origin = (origin[0] + area.row0, origin[1] + area.col0)
        with WindowReader(file_sources(fused_path), f_origin) as fused:
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


def _reference_bit_depth(
    bit_depth: int | None, ds: Any, sensor: Sensor | None, path: str
) -> _Choice:
    """``--bit-depth``, else the reference's NBITS, else the sensor's, else its data type."""
    dt = np.dtype(ds.dtypes[0])
    if bit_depth is not None:
        if isinstance(bit_depth, bool) or not 1 <= int(bit_depth) <= 32:
            raise OptionError(f"--bit-depth {bit_depth} must be an integer from 1 to 32")
        return _Choice(int(bit_depth), "option")
    nbits = ds.tags(ns="IMAGE_STRUCTURE").get("NBITS") or ds.tags(1, ns="IMAGE_STRUCTURE").get(
        "NBITS"
    )
    if nbits:
        return _Choice(int(nbits), "reference metadata (NBITS)")
    if dt.kind in "iu":
        if sensor is not None and sensor.bit_depth and sensor.bit_depth <= dt.itemsize * 8:
            return _Choice(int(sensor.bit_depth), f"sensor {sensor.name}")
        return _Choice(dt.itemsize * 8, "reference data type")
    if sensor is not None and sensor.bit_depth:
        return _Choice(int(sensor.bit_depth), f"sensor {sensor.name}")
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
    the fused file's PANSHARP_RATIO tag, else the sensor's); ``bit_depth`` PSNR/SSIM's
    (default: the fused file's PANSHARP_BIT_DEPTH tag, else the reference's metadata, the
    sensor's or its data type's); ``sensor``: default the PANSHARP_SENSOR tag, else
    detected from the reference. A nodata border of either file (declared nodata, NaN,
    all-zero pixels of a fused file without declared nodata) is left out: both are
    scored on the rectangle that holds data in both (:mod:`quality.valid_area`), then
    cut as quality.md A.5 says.
    """
    t = _check_tile(tile)
    nthreads = threads or default_threads()
    name = Path(fused_path).name
    warnings: list[str] = []
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
            tags = dict(f.tags())
            gtags = dict(g.tags())
            sens_c = choose_sensor(
                sensor,
                tags,
                fused_path,
                lambda: detect_sensor([Path(gt_path)], gtags),
                warnings,
            )
            sens_out = sens_c.value
            r = _reference_ratio(ratio, tags, sens_out)
            bits_c = choose_bit_depth(
                bit_depth,
                tags,
                fused_path,
                partial(_reference_bit_depth, ds=g, sensor=sens_out, path=gt_path),
                warnings,
            )
            L = bits_c.value
            bands, rows, cols = g.count, g.height, g.width
            g_nodata, f_nodata = g.nodata, f.nodata
        _check_reduced_size(rows, cols, f"the reference {gt_path}", "")
        layers = [
            file_layer("reference", gt_path, g_nodata, (0, 0), cols),
            file_layer("fused", fused_path, f_nodata, (0, 0), cols, zero_rule=True),
        ]
        scan = scan_valid(rows, cols, layers)
        area = scan.check(f"the reference grid ({rows}x{cols} pixels of {gt_path})")
        if area != Area(0, rows, 0, cols):
            _check_reduced_size(
                area.rows,
                area.cols,
                f"the valid area of {fused_path} and {gt_path} ({area.describe()})",
                "",
            )
        nodata = _nodata_info(scan, warnings, "PANSHARP_METHOD" in tags)
        report: dict[str, Any] = {
            "scene": {
                "reference": str(gt_path),
                "fused": str(fused_path),
                "bands": bands,
                "reduced_grid": [area.rows, area.cols],
                "full_grid": None,
                "valid_area": _area_info(scan, area, (0, 0), str(gt_path)),
                "fused_nodata": nodata["fused"],
                "nodata": nodata,
            },
            "protocol": _protocol_info("reduced", r, sens_c, bits_c, sens_out.gains(bands), t),
            "results": [],
            "warnings": warnings,
        }
        rows, cols = area.rows, area.cols
        job = _Job(sens_out, L, t, nthreads, "", progress, {})
        previews = (
            ReducedPreviews(rows, cols, rgb_bands(bands, sens_out.band_names))
            if quicklook
            else None
        )
        bar = _Bar(progress, f"{name} reduced", {"score": rows * cols})
        corner = (area.row0, area.col0)
        with (
            WindowReader(file_sources(fused_path), corner) as fr,
            WindowReader(file_sources(gt_path), corner) as gr,
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
