"""The area an evaluation scores: the scene cut to the rectangle that holds data.

The protocol's indexes have no mask (quality.md), so a nodata border (declared nodata,
NaN, or all-zero pixels of a file without declared nodata) is left out by scoring the
rectangle that holds data in every input, exactly as if the scene had been cropped to
it (:mod:`quality.valid_area` finds it); holes inside are refused. This module turns
that rectangle into the restricted scene and reduced-resolution geometry the runs use,
refuses grids too small for the indexes, and writes what was left out into the report
(``scene.valid_area``, ``scene.nodata``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from affine import Affine
from rasterio.windows import Window

from errors import QualityError
from quality.checks import BLOCK
from quality.eval_degrade import ReducedGeometry
from quality.eval_io import count_invalid
from quality.protocols import CUT_LEADING, CUT_TRAILING, min_reduced_size
from quality.valid_area import Area, Layer, ValidScan, file_layer, ms_layer, nodata_summary
from raster.scene import Scene


def scene_layers(scene: Scene, origin: tuple[int, int], cols: int) -> list[Layer]:
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


def restrict(scene: Scene, area: Area) -> Scene:
    """The scene whose output window is ``area`` (in output-window coordinates).

    Everything downstream (tile plans, the reader, the output transform) follows the
    window; the MS is still read around it from the whole file, as at the scene edge.
    """
    win = scene.window
    sub = Window(int(win.col_off) + area.col0, int(win.row_off) + area.row0, area.cols, area.rows)
    return replace(scene, window=sub)


def restrict_geometry(geom: ReducedGeometry, area: Area) -> ReducedGeometry:
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


def invalid_in_geometry(scene: Scene, geom: ReducedGeometry) -> None:
    """Refuse nodata inside the reduced-resolution GT and its PAN blocks.

    The valid-area scan has already cut the scene to the rectangle that holds data on
    the PAN grid; this checks the GT at MS scale (the MTF filter of Wald's degradation
    reads every GT pixel), which the PAN-scale scan sees only through nearest samples.
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


def full_grid(scene: Scene) -> tuple[int, int]:
    """The evaluated full-resolution grid: the output window cut to whole MS pixels."""
    h, w = scene.out_shape
    r = scene.ratio
    return h - h % r, w - w % r


def check_block(rows: int, cols: int, what: str) -> None:
    """Refuse a grid smaller than one index block (the indexes are blockwise)."""
    if rows < BLOCK or cols < BLOCK:
        raise QualityError(
            f"{what} is {rows}x{cols} pixels, smaller than one {BLOCK}x{BLOCK} block: the "
            f"indexes are computed on {BLOCK}-pixel blocks; give a larger scene"
        )


def check_reduced_size(rows: int, cols: int, what: str, hint: str) -> None:
    """Refuse a reference too small for the border cut plus one block (quality.md A.5)."""
    m = min_reduced_size()
    if rows < m or cols < m:
        raise QualityError(
            f"the reduced-resolution protocol needs at least {m}x{m} reference pixels (the "
            f"border cut drops {CUT_LEADING + CUT_TRAILING} lines and one {BLOCK}x{BLOCK} "
            f"block must remain), but {what} gives {rows}x{cols}{hint}"
        )


def area_info(scan: ValidScan, area: Area, shift: tuple[int, int], of: str) -> dict[str, Any]:
    """The report's ``valid_area``: the scored window in ``of``'s pixel coordinates."""
    a = area.shifted(*shift)
    total = scan.shape[0] * scan.shape[1]
    return {
        "rows": [a.row0, a.row1],
        "cols": [a.col0, a.col1],
        "of": of,
        "left_out_px": total - area.pixels,
    }


def nodata_info(scan: ValidScan, warnings: list[str], own: bool = False) -> dict[str, str]:
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
