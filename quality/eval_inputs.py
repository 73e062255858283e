"""The files ``evaluate --fused`` and ``--reference`` score, checked against each other.

A result made elsewhere only means something when it lies on the grid it is compared
with: the PAN grid for ``--fused`` (the scene's output window, what ``pansharp fuse``
writes, or the whole PAN), the reference's grid for ``--reference``. These checks read
headers only and raise before any pixel is read, naming the file and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rasterio
from affine import Affine

from errors import GeometryError, InputFileError, QualityError
from raster.scene import Scene


def open_input(path: str, role: str) -> Any:
    """Open ``path`` with rasterio; a missing or unreadable file names its ``role``."""
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


def georef(ds: Any) -> Affine | None:
    """The dataset's geotransform, None for an ungeoreferenced file."""
    t = ds.transform
    return t if (t != Affine.identity() or ds.crs is not None) else None


def same_grid(a: Affine, b: Affine) -> bool:
    """Equal geotransforms, to 1e-6 of a pixel."""
    tol = 1e-6 * max(abs(a.a), abs(a.e), 1e-12)
    return all(abs(x - y) <= tol for x, y in zip(a[:6], b[:6], strict=True))


def fused_origin(scene: Scene, path: str, ds: Any) -> tuple[int, int]:
    """Where the fused file ``ds`` lies on the PAN grid: (0, 0) of the output window when
    it has the window's size, the window's offset when it is the whole PAN; anything
    else (band count, size, geotransform) is refused."""
    fb, fh, fw = ds.count, ds.height, ds.width
    if fb != scene.n_bands:
        raise QualityError(
            f"fused file {path} has {fb} bands but the MS has {scene.n_bands}; "
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
            f"fused file {path} is {fh}x{fw} pixels but the PAN grid where the MS "
            f"overlaps it is {h_out}x{w_out} (PAN {scene.pan_shape[0]}x"
            f"{scene.pan_shape[1]}); the output must be on the PAN grid"
        )
    ftrans = georef(ds)
    pan_geo = scene.pan_transform != Affine.identity() or scene.crs is not None
    if ftrans is not None and pan_geo and not same_grid(ftrans, expect):
        raise GeometryError(
            f"fused file {path} has the right size but another geotransform than the "
            f"PAN {scene.pan_path}; warp it onto the PAN grid first"
        )
    return origin


def check_reference_pair(gt_path: str, g: Any, fused_path: str, f: Any) -> None:
    """The fused file and the reference: same bands, same size, same geotransform."""
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
    ft, gtt = georef(f), georef(g)
    if ft is not None and gtt is not None and not same_grid(ft, gtt):
        raise GeometryError(
            f"fused file {fused_path} and reference {gt_path} have the same size but "
            "different geotransforms; put them on the same grid first"
        )
