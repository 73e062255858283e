"""``fuse(pan, ms, method=..., **options) -> xarray.DataArray``, lazily, with dask.

The array is what ``pansharp fuse`` writes, pixel for pixel (same type, nodata, values),
with the output's CRS and transform in rioxarray's conventions: dims ``(band, y, x)``,
``x``/``y`` the pixel centres, a ``spatial_ref`` coordinate holding ``crs_wkt`` and
``GeoTransform``, ``_FillValue`` the nodata. With rioxarray installed, ``.rio.crs``,
``.rio.transform()`` and ``.rio.to_raster()`` work on it; ``.compute()`` gives numpy.

What is eager and what is lazy. On the call: the inputs' headers, the scene's facts and
the method's prepare phase (a classical method's fit pass over the scene, a network's
weights loaded and checked), so a bad input fails here, as ``fuse`` would before writing.
Lazy: the pixels. The dask graph has one chunk per strip of :data:`tiling.rows.TASK_TILES`
tile rows, full width (:func:`tiling.rows.row_ranges`); each chunk's task fuses its
rows exactly as the whole run does (:func:`tiling.executor.execute` with ``rows``: the
halo, or every blended patch reaching the strip, read inside the task), so the number
of tasks grows with the scene height over the strip height, not with its area.

Inputs are file paths (PAN, then one or more MS files) or ``xarray.DataArray``s in
rioxarray's conventions (2-D or ``(band, y, x)``, a CRS and transform): these are
written once to GeoTIFFs in a temporary folder that lives as long as the returned
array's graph (on a cluster, give paths on shared storage instead).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

from errors import OptionError
from raster.cog import RawBlocks
from tiling.fuse import GDAL_ENV, FuseOptions, PreparedRun, check_options, prepare_run, row_tasks
from tiling.rows import RowTask, fuse_rows

OPTION_NAMES = tuple(f.name for f in dataclasses.fields(FuseOptions))


def fuse(pan: Any, ms: Any, method: str = "gsa", **options: Any) -> Any:
    """The fused scene as a lazy ``xarray.DataArray`` (see the module docstring).

    ``ms``: one MS (path or DataArray) or a list of them (one per band). ``options``:
    any :class:`tiling.fuse.FuseOptions` field (``sensor``, ``weights``, ``tile``,
    ``dtype``, ``nodata``, ...), as ``pansharp fuse`` takes them.
    """
    import dask
    import dask.array as darr
    import xarray as xr

    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise OptionError(
            f"unknown fuse option(s) {', '.join(unknown)}; valid: {', '.join(OPTION_NAMES)}"
        )
    opts = FuseOptions(method=method, **options)
    if "tile" in options and "patch" not in options:
        opts.patch = opts.tile  # as the CLI: --tile is a network's patch size too
    check_options(opts)
    keep: list[Any] = []
    pan_path = _as_path(pan, "pan", keep)
    ms_list = ms if isinstance(ms, (list, tuple)) else [ms]
    ms_paths = [_as_path(m, f"ms[{i}]", keep) for i, m in enumerate(ms_list)]
    with rasterio.Env(**GDAL_ENV):
        run = prepare_run(pan_path, ms_paths, opts)
    tasks = row_tasks(pan_path, ms_paths, opts, run, RawBlocks())
    spec = run.spec
    prepared = dask.delayed(run.prepared, pure=True)
    dtype = np.dtype(spec.dtype)
    chunks = [
        darr.from_delayed(
            dask.delayed(_strip, pure=True)(task, prepared, spec.count, spec.width),
            shape=(spec.count, task.rows[1] - task.rows[0], spec.width),
            dtype=dtype,
        )
        for task in tasks
    ]
    data = darr.concatenate(chunks, axis=1)
    if keep:  # the temporary input files live as long as the graph
        weakref.finalize(data, _cleanup, list(keep))
    return xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords=_coords(run),
        attrs=_attrs(run),
        name=method,
    )


def _strip(task: RowTask, prepared: Any, count: int, width: int) -> np.ndarray:
    """One chunk: the task's rows fused and converted, as ``fuse`` writes them."""
    res = fuse_rows(task, prepared)
    r0, r1 = task.rows
    out = None
    for block in res.blocks:
        if out is None:
            out = np.empty((count, r1 - r0, width), dtype=block.block.dtype)
        h, w = block.block.shape[1:]
        out[:, block.row - r0 : block.row - r0 + h, block.col : block.col + w] = block.block
    if out is None:
        raise RuntimeError(f"rows {task.rows} produced no block")
    return out


def _coords(run: PreparedRun) -> dict[str, Any]:
    import xarray as xr

    spec = run.spec
    t: Affine = spec.transform
    cols = np.arange(spec.width) + 0.5
    rows = np.arange(spec.height) + 0.5
    coords: dict[str, Any] = {"band": np.arange(1, spec.count + 1)}
    if t.b == 0 and t.d == 0:  # north-up: 1-D centres (rioxarray's layout)
        coords["x"] = t.c + t.a * cols
        coords["y"] = t.f + t.e * rows
    ref = {"GeoTransform": " ".join(str(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e))}
    if spec.crs is not None:
        wkt = spec.crs.to_wkt()
        ref.update(crs_wkt=wkt, spatial_ref=wkt)
    coords["spatial_ref"] = xr.Variable((), 0, attrs=ref)
    return coords


def _attrs(run: PreparedRun) -> dict[str, Any]:
    spec = run.spec
    attrs: dict[str, Any] = dict(spec.tags)
    if spec.nodata is not None:
        attrs["_FillValue"] = spec.nodata
    attrs["long_name"] = tuple(spec.descriptions)
    return attrs


def _as_path(value: Any, role: str, keep: list[Any]) -> str:
    """A path for an input: itself, or a DataArray written to a temporary GeoTIFF."""
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    try:
        import xarray as xr
    except ImportError:  # pragma: no cover - xarray is a dependency
        xr = None
    if xr is None or not isinstance(value, xr.DataArray):
        raise OptionError(f"{role}: give a file path or an xarray.DataArray, not {type(value)}")
    folder = tempfile.mkdtemp(prefix="pansharp-inputs-")
    keep.append(folder)
    path = Path(folder) / f"{role.replace('[', '_').replace(']', '')}.tif"
    _write_dataarray(value, path, role)
    return str(path)


def _write_dataarray(da: Any, path: Path, role: str) -> None:
    """``da`` as a GeoTIFF with its CRS and transform (rioxarray's conventions)."""
    arr = np.asarray(da.values)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise OptionError(f"{role}: a DataArray of 2 or 3 dims (band, y, x), got {arr.ndim}")
    crs, transform = _georef(da, role)
    nodata = da.attrs.get("_FillValue", da.encoding.get("_FillValue"))
    with rasterio.open(
        path, "w", driver="GTiff", count=arr.shape[0], height=arr.shape[1], width=arr.shape[2],
        dtype=arr.dtype, crs=crs, transform=transform, nodata=nodata, tiled=True,
    ) as dst:  # fmt: skip
        dst.write(arr)


def _georef(da: Any, role: str) -> tuple[Any, Affine]:
    """(CRS or None, transform) from rioxarray's accessor if present, else its conventions."""
    rio = getattr(da, "rio", None)
    if rio is not None:
        try:
            return rio.crs, rio.transform(recalc=True)
        except Exception:  # noqa: BLE001 - no georeference on it: the conventions below
            pass
    ref = da.coords.get("spatial_ref")
    attrs = dict(ref.attrs) if ref is not None else {}
    crs = None
    if attrs.get("crs_wkt") or attrs.get("spatial_ref"):
        crs = rasterio.crs.CRS.from_wkt(attrs.get("crs_wkt") or attrs["spatial_ref"])
    if "GeoTransform" in attrs:
        c, a, b, f, d, e = (float(v) for v in str(attrs["GeoTransform"]).split())
        return crs, Affine(a, b, c, d, e, f)
    if "x" in da.coords and "y" in da.coords and da.sizes.get("x", 0) > 1 and da.sizes["y"] > 1:
        x, y = np.asarray(da["x"]), np.asarray(da["y"])
        a, e = float(x[1] - x[0]), float(y[1] - y[0])
        return crs, Affine(a, 0, float(x[0]) - a / 2, 0, e, float(y[0]) - e / 2)
    raise OptionError(
        f"{role}: the DataArray has no georeference (rioxarray's spatial_ref/GeoTransform, "
        "or x/y coordinates); write it with rio.write_crs / rio.write_transform"
    )


def _cleanup(folders: list[str]) -> None:
    import shutil

    for f in folders:
        shutil.rmtree(f, ignore_errors=True)
