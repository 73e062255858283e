"""A PAN/MS pair opened, checked and put in one geometry.

:func:`open_scene` validates the inputs (one clear error per problem, naming the file
and the flag that fixes it) and works out the geometry once: the integer ratio from
the geotransforms, the output window (the PAN grid where the MS overlaps it) and the
affine map from PAN pixel to continuous MS pixel used to resample MS tiles onto the
PAN grid with the correct sub-pixel phase (Landsat's PAN grid is offset by 7.5 m from
the MS grid: MS centres fall on PAN pixel 2j + 1, exactly the toolbox's EXP phase).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioIOError
from rasterio.transform import array_bounds
from rasterio.windows import Window

from errors import GeometryError, InputFileError, RasterFormatError

RATIO_TOLERANCE = 2e-3  # WorldView tiles carry 0.49999 m / 2.0001 m pixels


@dataclass(frozen=True)
class BandSource:
    """One MS band: which file, which band index (1-based)."""

    path: str
    index: int


@dataclass
class Scene:
    """Everything the engine needs to know about a PAN/MS pair, without holding pixels."""

    pan_path: str
    bands: list[BandSource]
    ms_paths: list[str]
    ratio: int
    pan_shape: tuple[int, int]
    ms_shape: tuple[int, int]
    crs: object
    pan_transform: Affine
    window: Window  # output window on the PAN grid
    # continuous MS pixel index (centre of sample j at j) = a * PAN index + b, per axis
    row_map: tuple[float, float]
    col_map: tuple[float, float]
    dtype: str  # MS dtype
    pan_dtype: str
    pan_nodata: float | None
    ms_nodata: float | None
    descriptions: list[str | None]
    colorinterp: list
    bit_depth: int | None  # the MS's NBITS
    tags: dict[str, str] = field(default_factory=dict)
    # MS in another CRS: read through a WarpedVRT with these arguments (crs, transform, size)
    warp: dict | None = None
    # an input has a GDAL mask band (per-dataset mask or alpha) rather than a nodata value
    has_mask: bool = False
    pan_bit_depth: int | None = None  # the PAN's NBITS

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def out_transform(self) -> Affine:
        return self.pan_transform @ Affine.translation(self.window.col_off, self.window.row_off)

    @property
    def out_shape(self) -> tuple[int, int]:
        return int(self.window.height), int(self.window.width)


def _open(path: str, role: str) -> rasterio.DatasetReader:
    p = Path(path)
    if "://" not in path and not path.startswith("/vsi") and not p.exists():
        raise InputFileError(f"{role} file not found: {path} (check the path)")
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise InputFileError(
            f"{role} file {path} is not a raster GDAL can read ({_first_line(exc)}); "
            "give a GeoTIFF or VRT"
        ) from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_readable(ds: rasterio.DatasetReader, role: str) -> None:
    """Read the first and last block of every band: a truncated TIFF fails here, not mid-run."""
    h, w = ds.height, ds.width
    for bidx in ds.indexes:
        bh, bw = ds.block_shapes[bidx - 1]
        for r0, c0 in ((0, 0), (max(0, h - bh), max(0, w - bw))):
            win = Window(c0, r0, min(bw, w - c0), min(bh, h - r0))
            try:
                ds.read(bidx, window=win)
            except Exception as exc:  # rasterio raises RasterioIOError / CPLE_* here
                raise RasterFormatError(
                    f"{role} file {ds.name} cannot be read at band {bidx} "
                    f"({_first_line(exc)}); the file looks truncated or corrupt, "
                    "re-download or re-export it"
                ) from None


def _bit_depth(ds: rasterio.DatasetReader) -> int | None:
    nbits = ds.tags(ns="IMAGE_STRUCTURE").get("NBITS") or ds.tags(1, ns="IMAGE_STRUCTURE").get(
        "NBITS"
    )
    return int(nbits) if nbits else None


def _is_georeferenced(ds: rasterio.DatasetReader) -> bool:
    return ds.transform != Affine.identity() or ds.crs is not None


def integer_ratio(pan_res: float, ms_res: float, source: str) -> int:
    """The ratio MS/PAN pixel size, which must be an integer within 0.2 %."""
    r = ms_res / pan_res
    check_coarser(r, source)
    k = round(r)
    if abs(r - k) > RATIO_TOLERANCE * r:
        raise GeometryError(
            f"MS/PAN pixel-size ratio is {r:.4f} ({source}), not an integer; "
            "resample the MS to an integer multiple of the PAN pixel size"
        )
    return int(k)


def check_coarser(r: float, source: str) -> None:
    """Refuse an MS whose pixels are not larger than the PAN's (ratio below 2, within
    the tolerance): the MS finer than or as fine as the PAN means the inputs are swapped
    or the wrong files, and a ratio-1 "fusion" only copies the MS."""
    if r < 2 * (1 - RATIO_TOLERANCE):
        what = "smaller than" if r < 1 - RATIO_TOLERANCE else "about the same size as"
        raise GeometryError(
            f"MS pixels are {what} the PAN pixels (MS/PAN ratio {r:.4f}, {source}); the MS "
            "must be the coarser grid: give PAN first, then MS, and check the files"
        )


def open_scene(
    pan: str,
    ms: list[str],
    ratio: int | None = None,
    nodata: float | None = None,
) -> Scene:
    """Open and check a PAN/MS pair; see the module docstring for what is checked."""
    if ratio is not None and int(ratio) < 2:
        raise GeometryError(f"--ratio {ratio} must be 2 or more (the MS/PAN pixel-size ratio)")
    if not ms:
        raise InputFileError("no MS file given: pass the MS as one multi-band file or one per band")
    with _open(pan, "PAN") as pds:
        if pds.count != 1:
            raise RasterFormatError(
                f"PAN file {pan} has {pds.count} bands; the PAN must be a single band "
                "(extract it with gdal_translate -b N)"
            )
        check_readable(pds, "PAN")
        has_mask = _has_mask(pds)
        pan_bits = _bit_depth(pds)
        pan_meta = dict(
            path=pan,
            shape=(pds.height, pds.width),
            transform=pds.transform,
            crs=pds.crs,
            dtype=pds.dtypes[0],
            nodata=pds.nodata,
            geo=_is_georeferenced(pds),
        )
    bands: list[BandSource] = []
    ms_meta: dict | None = None
    descriptions: list[str | None] = []
    colorinterp: list = []
    tags: dict[str, str] = {}
    bit_depth = None
    for path in ms:
        with _open(path, "MS") as ds:
            check_readable(ds, "MS")
            has_mask = has_mask or _has_mask(ds)
            meta = dict(
                shape=(ds.height, ds.width),
                transform=ds.transform,
                crs=ds.crs,
                dtype=ds.dtypes[0],
                nodata=ds.nodata,
                geo=_is_georeferenced(ds),
            )
            if ms_meta is None:
                ms_meta = meta
                tags = ds.tags()
                bit_depth = _bit_depth(ds)
            elif (meta["shape"], meta["transform"], meta["crs"]) != (
                ms_meta["shape"],
                ms_meta["transform"],
                ms_meta["crs"],
            ):
                raise GeometryError(
                    f"MS file {path} is not on the same grid as {ms[0]}; "
                    "all single-band MS files must share size, transform and CRS"
                )
            for i in ds.indexes:
                bands.append(BandSource(path, i))
                descriptions.append(ds.descriptions[i - 1])
                colorinterp.append(ds.colorinterp[i - 1])
    assert ms_meta is not None
    ms_dtype = (
        np.result_type(*[_dtype_of(b.path) for b in bands]).name
        if len(ms) > 1
        else ms_meta["dtype"]
    )
    geo = pan_meta["geo"] and ms_meta["geo"]
    warp = None
    if geo:
        if pan_meta["crs"] != ms_meta["crs"] and pan_meta["crs"] and ms_meta["crs"]:
            row_map, col_map, k, warp = _reprojected_maps(pan_meta, ms[0], ratio)
            ms_meta["shape"] = (warp["height"], warp["width"])
        else:
            row_map, col_map, k = _maps_from_transforms(pan_meta, ms_meta, ratio)
    else:
        if ratio is None:
            raise GeometryError(
                f"{pan if not pan_meta['geo'] else ms[0]} has no georeference, so the "
                "ratio cannot be read from the geotransforms; give it with --ratio"
            )
        k = int(ratio)
        _check_shapes(pan_meta["shape"], ms_meta["shape"], k, pan, ms[0])
        # Ungeoreferenced: MS pixel j covers PAN block [k j, k j + k): centre at k j + k/2.
        row_map = (1.0 / k, 0.5 / k - 0.5)
        col_map = (1.0 / k, 0.5 / k - 0.5)
    window = _overlap_window(pan_meta["shape"], ms_meta["shape"], row_map, col_map, pan, ms[0])
    return Scene(
        pan_path=pan,
        bands=bands,
        ms_paths=list(ms),
        ratio=k,
        pan_shape=pan_meta["shape"],
        ms_shape=ms_meta["shape"],
        crs=pan_meta["crs"],
        pan_transform=pan_meta["transform"],
        window=window,
        row_map=row_map,
        col_map=col_map,
        dtype=ms_dtype,
        pan_dtype=pan_meta["dtype"],
        pan_nodata=pan_meta["nodata"] if nodata is None else nodata,
        ms_nodata=ms_meta["nodata"] if nodata is None else nodata,
        descriptions=descriptions,
        colorinterp=colorinterp,
        bit_depth=bit_depth,
        tags=tags,
        warp=warp,
        has_mask=has_mask,
        pan_bit_depth=pan_bits,
    )


def _has_mask(ds: rasterio.DatasetReader) -> bool:
    return any(f.name in ("per_dataset", "alpha") for flags in ds.mask_flag_enums for f in flags)


def _dtype_of(path: str) -> np.dtype:
    with rasterio.open(path) as ds:
        return np.dtype(ds.dtypes[0])


def _check_shapes(pan_shape, ms_shape, k, pan, ms) -> None:
    for axis, (p, m) in enumerate(zip(pan_shape, ms_shape, strict=True)):
        if abs(p - k * m) >= k:
            name = "rows" if axis == 0 else "columns"
            raise GeometryError(
                f"PAN {pan} has {p} {name} and MS {ms} has {m}: not a ratio of {k}; "
                "check --ratio or the inputs"
            )


def _maps_from_transforms(pan_meta: dict, ms_meta: dict, ratio: int | None):
    pt, mt = pan_meta["transform"], ms_meta["transform"]
    if pt.b != 0 or pt.d != 0 or mt.b != 0 or mt.d != 0:
        raise GeometryError(
            "rotated geotransforms are not supported; warp the inputs north-up with gdalwarp"
        )
    if pt.a * mt.a <= 0 or pt.e * mt.e <= 0:
        raise GeometryError("PAN and MS geotransforms point in different directions")
    kx = integer_ratio(abs(pt.a), abs(mt.a), "from the geotransforms")
    ky = integer_ratio(abs(pt.e), abs(mt.e), "from the geotransforms")
    if kx != ky:
        raise GeometryError(f"ratio is {kx} across and {ky} down; both must be equal")
    if ratio is not None and int(ratio) != kx:
        raise GeometryError(
            f"--ratio {ratio} disagrees with the geotransforms, which give {kx}; drop --ratio"
        )
    # PAN pixel i centre: x = pt.c + (i + 0.5) pt.a; MS continuous index u = (x - mt.c)/mt.a - 0.5
    col_map = (pt.a / mt.a, (pt.c + 0.5 * pt.a - mt.c) / mt.a - 0.5)
    row_map = (pt.e / mt.e, (pt.f + 0.5 * pt.e - mt.f) / mt.e - 0.5)
    return row_map, col_map, kx


def _reprojected_maps(pan_meta: dict, ms_path: str, ratio: int | None):
    """MS in another CRS: warped (WarpedVRT, cubic) onto a grid aligned with the PAN grid.

    The warped grid starts at the PAN origin with k-times-larger pixels, so MS pixel j
    covers PAN block [k j, k j + k); pixels outside the MS footprint become nodata.
    The MS footprint, reprojected into the PAN's CRS, must overlap the PAN, and its
    pixel size there must be coarser than the PAN's: else the warp gives an all-nodata
    image (or a ratio of 1) that nothing should be fused from.
    """
    from rasterio.warp import calculate_default_transform, transform_bounds

    with rasterio.open(ms_path) as ds:
        try:
            t, _, _ = calculate_default_transform(
                ds.crs, pan_meta["crs"], ds.width, ds.height, *ds.bounds
            )
            left, bottom, right, top = transform_bounds(
                ds.crs, pan_meta["crs"], *ds.bounds, densify_pts=21
            )
        except Exception as exc:  # CRSError / CPLE_*: the footprint has no image there
            raise GeometryError(
                f"MS {ms_path} cannot be reprojected into the PAN's CRS {pan_meta['crs']} "
                f"({_first_line(exc)}); check that both cover the same area and CRS"
            ) from None
    pt = pan_meta["transform"]
    h, w = pan_meta["shape"]
    west, south, east, north = array_bounds(h, w, pt)
    values = (left, bottom, right, top)
    if not all(math.isfinite(v) for v in values) or (
        right <= west or left >= east or top <= south or bottom >= north
    ):
        raise GeometryError(
            f"PAN {pan_meta['path']} and MS {ms_path} do not overlap (MS reprojected "
            f"into {pan_meta['crs']}); check that both cover the same area and CRS"
        )
    r = abs(t.a) / abs(pt.a)
    if ratio is None:
        check_coarser(r, "MS pixel size reprojected into the PAN's CRS")
    k = int(ratio) if ratio is not None else round(r)  # >= 2 either way (checked above)
    warp = dict(
        crs=pan_meta["crs"],
        transform=Affine(pt.a * k, 0.0, pt.c, 0.0, pt.e * k, pt.f),
        width=math.ceil(w / k),
        height=math.ceil(h / k),
    )
    aligned = (1.0 / k, 0.5 / k - 0.5)
    return aligned, aligned, k, warp


def _overlap_window(pan_shape, ms_shape, row_map, col_map, pan, ms) -> Window:
    """PAN pixels whose centre falls inside the MS footprint (continuous index in [-0.5, n-0.5])."""
    spans = []
    for n_pan, n_ms, (a, b) in zip(pan_shape, ms_shape, (row_map, col_map), strict=True):
        lo = math.ceil((-0.5 - b) / a - 1e-9)
        hi = math.floor((n_ms - 0.5 - b) / a + 1e-9)
        lo, hi = max(lo, 0), min(hi, n_pan - 1)
        spans.append((lo, hi))
    (r0, r1), (c0, c1) = spans
    if r1 < r0 or c1 < c0:
        raise GeometryError(
            f"PAN {pan} and MS {ms} do not overlap; check that both cover the same area and CRS"
        )
    return Window(c0, r0, c1 - c0 + 1, r1 - r0 + 1)
