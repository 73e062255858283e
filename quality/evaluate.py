"""``pansharp evaluate`` as a library: score methods, or existing outputs, on any scene.

The protocol is ``/work/shared/protocols/quality.md`` (Vivone et al., "A new benchmark
based on recent advances in multispectral pansharpening", IEEE GRSM 2021, and its
MATLAB toolbox), run over scenes of any size without holding one whole:

- **reduced resolution** (quality.md A, Wald's protocol): the scene is degraded tile by
  tile into temporary GeoTIFFs (:mod:`quality.eval_degrade`: MS_LR = decimated MTF
  filter of the MS, PAN_LR = imresize of the PAN by 1/ratio), each method fuses the
  degraded pair through the executor ``fuse`` uses (:mod:`quality.eval_runs`) into a
  temporary float64 GeoTIFF, which is streamed back against the original MS as GT;
- **full resolution** (quality.md B): each method fuses the scene into a temporary
  float64 GeoTIFF, streamed with PAN and EXP(MS) into the accumulator
  (:mod:`quality.eval_scoring`).

Sensor, bit depth, band weights and gains are decided once by :mod:`raster.scene_facts`,
by the rules ``fuse`` applies, with a fused file's ``PANSHARP_*`` tags between the
options and the metadata. Nodata: every form scores the rectangle that holds data in all
its inputs (:mod:`quality.eval_area`). Temporary files live in one folder removed at the
end, also on error or interrupt. The report's layout is :mod:`quality.eval_report`'s
(issue 3). A method that fails while running is reported as ``{"method", "scale",
"error"}`` and the other methods are still scored; inputs that cannot be evaluated
raise before any work, with one message naming the file or the option that fixes it.
This module holds the three entry points; the formatting functions the CLI uses are
re-exported from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from errors import OptionError, QualityError
from models.registry import check_bands_and_ratio, get_entry
from quality.eval_area import (
    area_info,
    check_block,
    check_reduced_size,
    full_grid,
    invalid_in_geometry,
    nodata_info,
    restrict,
    restrict_geometry,
    scene_layers,
)
from quality.eval_degrade import degrade_scene, reduced_geometry
from quality.eval_inputs import check_reference_pair, fused_origin, open_input
from quality.eval_io import WindowReader, file_sources
from quality.eval_options import PROTOCOLS, check_interpolator, check_tile, method_names, scales_of
from quality.eval_report import (
    CSV_COLUMNS,
    best_values,
    failures,
    protocol_info,
    result,
    title,
    to_csv,
    to_json,
)
from quality.eval_runs import (
    Bar,
    Job,
    attempt,
    check_methods,
    full_one,
    gdal_env,
    reduced_one,
    workdir,
)
from quality.eval_scoring import score_full, score_reduced
from quality.protocols import IDEAL
from quality.quicklook import ReducedPreviews, render, rgb_bands
from quality.valid_area import Area, file_layer, scan_valid
from raster.scene import open_scene
from raster.scene_facts import FusedTags, SceneOptions, decide, decide_reference
from tiling.engine import Progress, default_threads


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
    adapt: tuple[str | None, int | None, float | None] = (None, None, None),
    steps: int | None = None,
) -> dict[str, Any]:
    """Score ``methods`` on the PAN/MS scene with quality.md's protocols; see the module doc.

    ``protocol``: ``both``, ``reduced`` (quality.md A) or ``full`` (quality.md B).
    ``sensor``: preset for the MTF gains (default: detected, else generic). ``ratio``:
    for ungeoreferenced inputs. ``bit_depth``: PSNR/SSIM peak (default: metadata, the
    sensor's, or the data type's). ``weights``: method -> weights file for deep models.
    ``adapt``: (mode, steps, seconds) of ``--adapt`` for the deep methods, which adapt
    on each protocol's own inputs. ``steps``: sampler steps of the diffusion methods
    (default: each one's; rows record ``steps`` and ``seed``). ``quicklook``: PNG path.
    Returns the issue-3 JSON layout as a dict.
    """
    scales = scales_of(protocol)
    names = method_names(methods)
    t = check_tile(tile)
    nthreads = threads or default_threads()
    ms_list = [ms] if isinstance(ms, str) else list(ms)
    with gdal_env(nthreads):
        scene = open_scene(pan, ms_list, ratio=ratio)
        facts = decide(scene, SceneOptions(sensor, bit_depth))
        warnings = list(facts.warnings)
        sens, L = facts.sensor, facts.bits
        check_interpolator(scene.ratio, names, scales)
        entries = {n: get_entry(n) for n in names}
        for n in names:
            check_bands_and_ratio(entries[n].info, scene.n_bands, scene.ratio)
        h_out, w_out = scene.out_shape
        check_block(h_out, w_out, f"the scene ({scene.pan_path} on the MS footprint)")
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
        ctx = facts.context()
        check_methods(names, scene, ctx, sens, L, weights, adapt, steps)
        # the rectangle that holds data in the PAN and the MS (quality.valid_area)
        win = scene.window
        origin = (int(win.row_off), int(win.col_off))
        scan = scan_valid(h_out, w_out, scene_layers(scene, origin, w_out))
        area = scan.check(f"the PAN grid where the MS overlaps it ({scene.pan_path})")
        masked = area != Area(0, h_out, 0, w_out)
        where = f" inside its valid area ({area.shifted(*origin).describe()} of the PAN)"
        geom = None
        fshape = None
        full_scene = scene
        if "full" in scales:
            if masked:
                fa = area.snapped(scene.ratio)
                full_scene = restrict(scene, fa)
                fshape = (fa.rows, fa.cols)
            else:
                fshape = full_grid(scene)
            check_block(
                *fshape,
                f"the scene ({scene.pan_path}, whole MS pixels{where if masked else ''})",
            )
        if "reduced" in scales:
            geom = reduced_geometry(scene)
            if masked:
                geom = restrict_geometry(geom, area.shifted(*origin))
            hint = "; use --protocol full or a larger scene" if "full" in scales else ""
            what = f"the MS {scene.ms_paths[0]}" + (where if masked else "")
            check_reduced_size(geom.rows, geom.cols, what, hint)
            invalid_in_geometry(scene, geom)
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
                "valid_area": area_info(scan, area, origin, str(scene.pan_path)),
                "nodata": nodata_info(scan, warnings),
            },
            "protocol": protocol_info(str(protocol).strip().lower(), facts, t),
            "results": [],
            "warnings": warnings,
        }
        names_rgb = rgb_bands(scene.n_bands, sens.band_names)
        previews = ReducedPreviews(geom.rows, geom.cols, names_rgb) if quicklook and geom else None
        heat: dict[str, np.ndarray] | None = {} if quicklook and fshape else None
        with workdir() as folder:
            job = Job(sens, L, t, nthreads, folder, progress, dict(weights or {}), adapt, steps)
            lr_scene = lr_ctx = None
            if geom is not None:
                pair = degrade_scene(
                    scene, geom, ctx.ms_gains, folder, tile=t, threads=nthreads, progress=progress
                )
                lr_scene = open_scene(pair.pan_lr, [pair.ms_lr])
                # the MS's band order (its descriptions): the degraded pair's files carry
                # none, and its bands are the MS's, in the same order
                lr_ctx = replace(ctx, dtype=lr_scene.dtype, max_value=None)
            for n in names:
                passes = 2 if entries[n].info.needs_fit else 1
                if geom is not None and lr_scene is not None and lr_ctx is not None:
                    npx = geom.rows * geom.cols
                    bar = Bar(
                        progress,
                        f"{n} reduced",
                        {"fit": npx if passes == 2 else 0, "fuse": npx, "score": npx},
                    )
                    report["results"].append(
                        attempt(
                            n,
                            "reduced",
                            partial(
                                reduced_one, job, n, scene, geom, lr_scene, lr_ctx, bar, previews
                            ),
                            previews.methods if previews else None,
                        )
                    )
                if fshape is not None:
                    npx = full_scene.out_shape[0] * full_scene.out_shape[1]
                    bar = Bar(
                        progress,
                        f"{n} full",
                        {
                            "fit": npx if passes == 2 else 0,
                            "fuse": npx,
                            "score": fshape[0] * fshape[1],
                        },
                    )
                    report["results"].append(
                        attempt(
                            n,
                            "full",
                            partial(full_one, job, n, full_scene, ctx, fshape, bar, heat),
                            heat,
                        )
                    )
        if quicklook:
            render(quicklook, title(scene.pan_path, sens, scene.ratio), previews, heat)
    return report


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
    writes them), else the inputs' metadata (:func:`raster.scene_facts.decide`);
    ``protocol.sensor_source`` and ``bit_depth_source`` say which rule decided, and
    ``warnings`` lists options that contradict the tags. The bit depth is reported
    only: no full-resolution index uses it. A nodata border (declared nodata, NaN, or
    all-zero pixels of a file without declared nodata) is left out: the scene is scored
    on the rectangle of whole MS pixels that holds data in PAN, MS and the fused file
    (:mod:`quality.valid_area`).
    """
    t = check_tile(tile)
    nthreads = threads or default_threads()
    ms_list = [ms] if isinstance(ms, str) else list(ms)
    name = Path(fused_path).name
    with gdal_env(nthreads):
        scene = open_scene(pan, ms_list, ratio=ratio)
        check_interpolator(scene.ratio, [], ("full",))
        with open_input(fused_path, "fused") as ds:
            tags = dict(ds.tags())
            fnodata = ds.nodata
            facts = decide(scene, SceneOptions(sensor, bit_depth), FusedTags(fused_path, tags))
            origin = fused_origin(scene, fused_path, ds)
        warnings = list(facts.warnings)
        fshape = full_grid(scene)
        check_block(*fshape, f"the scene ({scene.pan_path}, whole MS pixels)")
        if scene.n_bands < 2:
            raise QualityError("D_lambda compares band pairs: the MS needs at least 2 bands")
        # valid area: pixels with data in PAN, MS (at PAN scale) and the fused file
        win = scene.window
        pan_origin = (int(win.row_off), int(win.col_off))
        layers = scene_layers(scene, pan_origin, fshape[1])
        layers.append(file_layer("fused", fused_path, fnodata, origin, fshape[1], zero_rule=True))
        scan = scan_valid(*fshape, layers)
        area = scan.check(f"the evaluated grid ({fshape[0]}x{fshape[1]} pixels of {fused_path})")
        if area != Area(0, fshape[0], 0, fshape[1]):
            area = area.snapped(scene.ratio)
            check_block(
                area.rows,
                area.cols,
                f"the valid area of {fused_path} ({area.shifted(*origin).describe()}, whole "
                "MS pixels)",
            )
            scene = restrict(scene, area)
            fshape = (area.rows, area.cols)
        # the window changed, not the bands; no full-resolution index uses the bit depth
        ctx = replace(facts.context(), bit_depth=None, max_value=None)
        nodata = nodata_info(scan, warnings, "PANSHARP_METHOD" in tags)
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
                "valid_area": area_info(scan, area, origin, str(fused_path)),
                "fused_nodata": nodata["fused"],
                "nodata": nodata,
            },
            "protocol": protocol_info("full", facts, t),
            "results": [],
            "warnings": warnings,
        }
        heat: dict[str, np.ndarray] | None = {} if quicklook else None
        bar = Bar(progress, f"{name} full", {"score": fshape[0] * fshape[1]})
        f_origin = (origin[0] + area.row0, origin[1] + area.col0)
        with WindowReader(file_sources(fused_path), f_origin) as fused:
            values = score_full(scene, ctx, fused, fshape, bar, heat, name, fused_path, t, nthreads)
        report["results"].append(result(name, "full", values))
        if quicklook:
            render(quicklook, title(fused_path, facts.sensor, scene.ratio), None, heat)
    return report


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
    detected from the reference (:func:`raster.scene_facts.decide_reference`). A nodata
    border of either file (declared nodata, NaN, all-zero pixels of a fused file without
    declared nodata) is left out: both are scored on the rectangle that holds data in
    both (:mod:`quality.valid_area`), then cut as quality.md A.5 says.
    """
    t = check_tile(tile)
    nthreads = threads or default_threads()
    name = Path(fused_path).name
    with gdal_env(nthreads):
        with open_input(gt_path, "reference") as g, open_input(fused_path, "fused") as f:
            check_reference_pair(gt_path, g, fused_path, f)
            tags = dict(f.tags())
            options = SceneOptions(sensor, bit_depth)
            facts = decide_reference(gt_path, g, options, ratio, FusedTags(fused_path, tags))
            bands, rows, cols = g.count, g.height, g.width
            g_nodata, f_nodata = g.nodata, f.nodata
        warnings = list(facts.warnings)
        check_reduced_size(rows, cols, f"the reference {gt_path}", "")
        layers = [
            file_layer("reference", gt_path, g_nodata, (0, 0), cols),
            file_layer("fused", fused_path, f_nodata, (0, 0), cols, zero_rule=True),
        ]
        scan = scan_valid(rows, cols, layers)
        area = scan.check(f"the reference grid ({rows}x{cols} pixels of {gt_path})")
        if area != Area(0, rows, 0, cols):
            check_reduced_size(
                area.rows,
                area.cols,
                f"the valid area of {fused_path} and {gt_path} ({area.describe()})",
                "",
            )
        nodata = nodata_info(scan, warnings, "PANSHARP_METHOD" in tags)
        report: dict[str, Any] = {
            "scene": {
                "reference": str(gt_path),
                "fused": str(fused_path),
                "bands": bands,
                "reduced_grid": [area.rows, area.cols],
                "full_grid": None,
                "valid_area": area_info(scan, area, (0, 0), str(gt_path)),
                "fused_nodata": nodata["fused"],
                "nodata": nodata,
            },
            "protocol": protocol_info("reduced", facts, t),
            "results": [],
            "warnings": warnings,
        }
        rows, cols = area.rows, area.cols
        sens, r = facts.sensor, facts.ratio
        previews = (
            ReducedPreviews(rows, cols, rgb_bands(bands, sens.band_names)) if quicklook else None
        )
        bar = Bar(progress, f"{name} reduced", {"score": rows * cols})
        corner = (area.row0, area.col0)
        with (
            WindowReader(file_sources(fused_path), corner) as fr,
            WindowReader(file_sources(gt_path), corner) as gr,
        ):
            values = score_reduced(
                (bands, rows, cols), r, facts.bits, fr, gr, bar, previews, name, t, nthreads
            )
        report["results"].append(result(name, "reduced", values))
        if quicklook:
            render(quicklook, title(fused_path, sens, r), previews, None)
    return report


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
