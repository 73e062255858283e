"""Raster I/O for ``pansharp evaluate``: temporary float GeoTIFFs and windowed readers.

The evaluation never holds a scene whole (quality.md: every index accumulates over the
tile stream). Intermediate products (the degraded pair, each method's fused image) go
to float64 tiled GeoTIFFs in a temporary folder, written tile by tile, and are read
back in windows: float64 because the reference toolbox computes in double, so a tile
read back is bit-identical to what the method produced.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from errors import RasterFormatError

TEMP_BLOCK = 256  # block side of the temporary GeoTIFFs


def create_float_raster(
    path: str,
    count: int,
    height: int,
    width: int,
    transform: Affine | None = None,
    crs: Any = None,
) -> Any:
    """Open a tiled, uncompressed float64 GeoTIFF for writing (``ds.write(arr, window=...)``)."""
    profile: dict[str, Any] = dict(
        driver="GTiff",
        count=count,
        height=height,
        width=width,
        dtype="float64",
        tiled=True,
        blockxsize=TEMP_BLOCK,
        blockysize=TEMP_BLOCK,
        BIGTIFF="IF_SAFER",
        interleave="band",
    )
    if transform is not None:
        profile["transform"] = transform
    if crs is not None:
        profile["crs"] = crs
    return rasterio.open(path, "w", **profile)


def write_block(ds: Any, arr: np.ndarray, row: int, col: int) -> None:
    """Write a (B, h, w) array at (row, col) of an open dataset."""
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    ds.write(a, window=Window(col, row, a.shape[2], a.shape[1]))


@dataclass(frozen=True)
class Source:
    """One band of a raster file: path and 1-based band index."""

    path: str
    band: int


class WindowReader:
    """Reads windows of a stack of bands, each worker thread with its own handles.

    GDAL datasets are not thread-safe, so every thread opens the files once (as
    :class:`tiling.reader.TileReader` does). ``origin`` is added to every window, so
    callers address a sub-grid (a crop of the MS, the output window of the PAN) in its
    own coordinates.
    """

    def __init__(self, sources: Sequence[Source], origin: tuple[int, int] = (0, 0)) -> None:
        self.sources = list(sources)
        self.origin = (int(origin[0]), int(origin[1]))
        self._groups: dict[str, list[int]] = {}
        for i, src in enumerate(self.sources):
            self._groups.setdefault(src.path, []).append(i)
        self._local = threading.local()
        self._stacks: list[ExitStack] = []
        self._lock = threading.Lock()

    def _handles(self) -> dict[str, Any]:
        h = getattr(self._local, "handles", None)
        if h is None:
            stack = ExitStack()
            h = {}
            for path in dict.fromkeys(s.path for s in self.sources):
                h[path] = stack.enter_context(rasterio.open(path))
            self._local.handles = h
            with self._lock:
                self._stacks.append(stack)
        return h

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """(B, r1 - r0, c1 - c0) float64 of the window, in the reader's coordinates.

        The bands of one file are read in one call, so a pixel-interleaved compressed
        file (a COG from ``pansharp fuse``) has each block decompressed once per window.
        """
        handles = self._handles()
        win = Window(c0 + self.origin[1], r0 + self.origin[0], c1 - c0, r1 - r0)
        out = np.empty((len(self.sources), r1 - r0, c1 - c0), dtype=np.float64)
        for path, slots in self._groups.items():
            try:
                data = handles[path].read([self.sources[i].band for i in slots], window=win)
            except Exception as exc:  # rasterio raises RasterioIOError / CPLE_* here
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise RasterFormatError(
                    f"cannot read {path} at rows {win.row_off}..{win.row_off + win.height}, "
                    f"cols {win.col_off}..{win.col_off + win.width} "
                    f"({first or type(exc).__name__}); the file looks truncated or corrupt"
                ) from None
            out[slots] = data
        return out

    def close(self) -> None:
        with self._lock:
            for s in self._stacks:
                s.close()
            self._stacks.clear()

    def __enter__(self) -> WindowReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_sources(path: str) -> list[Source]:
    """Every band of ``path`` as :class:`Source` objects."""
    with rasterio.open(path) as ds:
        return [Source(path, i) for i in ds.indexes]


def strips(rows: int, cols: int, target_pixels: int = 1 << 21) -> list[tuple[int, int]]:
    """Row ranges of about ``target_pixels`` pixels each, for cheap whole-file scans."""
    step = max(1, target_pixels // max(cols, 1))
    return [(r, min(r + step, rows)) for r in range(0, rows, step)]


def count_invalid(
    path: str,
    band: int,
    nodata: float | None,
    window: tuple[int, int, int, int] | None = None,
) -> tuple[int, int]:
    """(invalid, total) pixels of one band: nodata value, NaN/inf, or masked by GDAL.

    ``window`` = (row0, rows, col0, cols); None is the whole band. Read in strips, so
    memory stays bounded whatever the file size.
    """
    with rasterio.open(path) as ds:
        if window is None:
            window = (0, ds.height, 0, ds.width)
        row0, rows, col0, cols = window
        flags = ds.mask_flag_enums[band - 1]
        masked = any(f.name in ("per_dataset", "alpha") for f in flags)
        floating = np.dtype(ds.dtypes[band - 1]).kind == "f"
        if nodata is None and not masked and not floating:
            return 0, rows * cols
        bad = 0
        for r0, r1 in strips(rows, cols):
            win = Window(col0, row0 + r0, cols, r1 - r0)
            data = ds.read(band, window=win)
            valid = np.ones(data.shape, dtype=bool)
            if nodata is not None:
                valid &= ~np.isnan(data) if np.isnan(nodata) else data != nodata
            if floating:
                valid &= np.isfinite(data)
            if masked:
                valid &= ds.read_masks(band, window=win) > 0
            bad += int(valid.size - np.count_nonzero(valid))
        return bad, rows * cols
