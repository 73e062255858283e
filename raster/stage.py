"""The stage of GDAL's COG writer (:class:`raster.cog.CogWriter`): raw pixels, no GDAL.

Why not a GDAL dataset: GDAL's block cache is one per process. A stage GeoTIFF open for
writing keeps its partly written blocks in that cache as dirty blocks, and a worker thread
that needs room for the PAN or MS block it is reading evicts and writes back whichever
block is oldest, the stage's included, while the calling thread goes on writing into the
stage. GDAL then loses writes: the calling thread reloads a block that is not yet on disk
(zeros) and its next flush overwrites the evicted one (GDAL issue 2011; its fix, PR 2015,
only makes another dataset's dirty block the last choice, and notes that a cache small
for the number of threads still fails). Measured here with GDAL 3.10.3 (rasterio's
wheel): a calling thread writing 32x32 windows of a 600x600x4 stage with 512-pixel blocks
while two threads read another file lost at least one window, as zeros, in 13 of 100 runs
with pansharp's 128-byte cache and 7 of 100 with a 1 MB one (less than the stage); in 0
of 100 with whole-block windows (GDAL >= 3.8 writes those past the cache) and 0 of 60
with a 128 MB cache (more than everything). ``fuse`` of the 600 x 600 WorldView-2 tile
with 32-pixel tiles and 8 threads lost one tile of one band in 1 of 20, 1 of 60 (GSA) and
1 of 30 (Brovey) runs; the issue saw 2 of 8 with ``--tile 64`` and 2 threads.

Here nothing of the stage goes through GDAL until every worker has finished: pixels go to
a raw file with positional writes (``pwrite``: thread-safe, disjoint ranges, so the
workers write their own tiles), and :meth:`RawStage.finish` describes the file to GDAL
as a VRT of raw bands (``VRTRawRasterBand``) that the COG driver then copies.

Layout: the full image, pixel-interleaved (BIP: row after row, each row ``width`` pixels
of ``count`` samples), native byte order; a tile is one ``pwrite`` per row (measured 3.0
ms per 512x512x4 uint16 tile, band-sequential rows took 14 ms), a full-width strip one
``pwrite``. The file is sparse until written, like the GeoTIFF stage with SPARSE_OK was.

Overviews: computed here, after the last tile, by :mod:`raster.overviews`'s rule (the
streaming writer's), each level a raw file like the stage, read and written in strips of
about ``STRIP_BYTES``; the VRT lists them as its bands' overviews and the COG driver copies
them instead of computing its own (``OVERVIEWS=FORCE_USE_EXISTING``). Only resamplings
other than AVERAGE and NEAREST are left to GDAL.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from errors import OutputError
from raster.overviews import OURS, downsample2, overview_sizes
from raster.tiff import interleave

_GDAL_TYPES = {
    "uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
    "uint32": "UInt32", "int32": "Int32", "uint64": "UInt64", "int64": "Int64",
    "float32": "Float32", "float64": "Float64",
}  # fmt: skip
STRIP_BYTES = 4 << 20  # source rows per overview step (the float means take ~12x that)


def plan_overviews(
    spec: Any, options: dict[str, str]
) -> tuple[list[tuple[int, int]], str, dict[str, str]]:
    """The overview levels to compute here, their resampling, and the options for GDAL's
    COG driver (upper-case keys) that make it copy them.

    ``OVERVIEWS=FORCE_USE_EXISTING`` means the source's own overviews to GDAL, and the
    stage has none: no overviews, as before. A resampling not in
    :data:`raster.overviews.OURS` (CUBIC, LANCZOS, ...): nothing here, GDAL computes them.
    """
    opts = {k.upper(): str(v) for k, v in options.items()}
    resampling = opts.get("OVERVIEW_RESAMPLING", "AVERAGE").upper()
    mode = opts.get("OVERVIEWS", "AUTO").upper()
    if resampling not in OURS or mode not in ("AUTO", "IGNORE_EXISTING", "NONE"):
        return [], resampling, opts
    block = int(opts.get("BLOCKSIZE", 512))
    sizes = overview_sizes(spec.height, spec.width, block, opts)
    opts["OVERVIEWS"] = "FORCE_USE_EXISTING" if sizes else "NONE"
    opts.pop("OVERVIEW_COUNT", None)  # applied here
    return sizes, resampling, opts


class RawStage:
    """A raw, pixel-interleaved image file in ``folder``, written tile by tile from any
    thread, handed to GDAL as ``stage.vrt`` once complete."""

    def __init__(self, folder: Path, spec: Any) -> None:
        self.spec = spec
        self.dtype = np.dtype(spec.dtype)
        if self.dtype.name not in _GDAL_TYPES:
            raise ValueError(f"no GDAL raw type for {self.dtype.name}")
        self.path = folder / "stage.raw"
        self.vrt_path = folder / "stage.vrt"
        self._pixel = spec.count * self.dtype.itemsize
        self._line = spec.width * self._pixel
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(self._fd, self._line * spec.height)  # a hole: space is taken when written
        self._levels: list[tuple[Path, int, int]] = []  # overview files, sizes

    def write(self, block: np.ndarray, row: int, col: int) -> None:
        """Store a (B, h, w) block whose top-left pixel is (row, col); thread-safe."""
        b, h, w = block.shape
        sp = self.spec
        if b != sp.count or row < 0 or col < 0 or row + h > sp.height or col + w > sp.width:
            raise ValueError(f"block {block.shape} at ({row}, {col}) is outside the stage")
        if self._fd is None:
            raise ValueError("the stage is finished")
        px = interleave(block, self.dtype)  # (h, w, B), C-contiguous
        at = row * self._line + col * self._pixel
        if w == sp.width:  # full rows: one contiguous range
            _pwrite_all(self._fd, memoryview(px).cast("B"), at)
            return
        rows = memoryview(px.reshape(h, w * b)).cast("B")  # one row: w * B samples
        n = w * self._pixel
        for r in range(h):
            _pwrite_all(self._fd, rows[r * n : (r + 1) * n], at + r * self._line)

    def finish(self, overviews: Sequence[tuple[int, int]] = (), resampling: str = "AVERAGE") -> Any:
        """Close the raw file, compute the ``overviews`` (sizes from
        :func:`raster.overviews.overview_sizes`), and open the stage's VRT for update, with
        the georeferencing and nodata set; the caller adds band metadata and closes it
        (GDAL writes the VRT)."""
        self.close()
        sp = self.spec
        src, (h0, w0) = self.path, (sp.height, sp.width)
        for k, (h, w) in enumerate(overviews, start=1):
            path = self.path.with_name(f"ovr{k}.raw")
            self._halve(src, h0, w0, path, h, w, resampling)
            self._levels.append((path, h, w))
            src, h0, w0 = path, h, w
        for path, h, w in self._levels:
            path.with_suffix(".vrt").write_text(self._vrt(path, h, w, []), encoding="ascii")
        names = [path.with_suffix(".vrt").name for path, _, _ in self._levels]
        self.vrt_path.write_text(self._vrt(self.path, sp.height, sp.width, names), "ascii")
        with warnings.catch_warnings():  # georeferencing is set right below
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(self.vrt_path, "r+")
        try:
            if sp.crs is not None:
                ds.crs = sp.crs
            if sp.transform is not None:
                ds.transform = sp.transform
            if sp.nodata is not None:
                ds.nodata = sp.nodata
        except BaseException:
            ds.close()
            raise
        return ds

    def _halve(self, src: Path, h0: int, w0: int, dst: Path, h: int, w: int, how: str) -> None:
        """The next overview level: ``dst`` (h x w) from ``src`` (h0 x w0), both raw BIP
        files, in strips of an even number of source rows (an odd last one repeats its
        last row, as :func:`raster.overviews.downsample2` does)."""
        count, dt = self.spec.count, self.dtype
        line_in, line_out = w0 * self._pixel, w * self._pixel
        rows = max(2, STRIP_BYTES // line_in // 2 * 2)
        fin = os.open(src, os.O_RDONLY)
        try:
            out = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(out, h * line_out)
                for r0 in range(0, h0, rows):
                    n = min(rows, h0 - r0)
                    buf = _pread_all(fin, n * line_in, r0 * line_in)
                    piece = np.frombuffer(buf, dt).reshape(n, w0, count)
                    small = np.ascontiguousarray(downsample2(piece, self.spec.nodata, how))
                    _pwrite_all(out, memoryview(small).cast("B"), r0 // 2 * line_out)
            finally:
                os.close(out)
        finally:
            os.close(fin)

    def _vrt(self, raw: Path, h: int, w: int, overviews: list[str]) -> str:
        """A VRT of ``raw`` (h x w, BIP like the stage) whose bands list the datasets
        ``overviews`` (same band numbers) as their overviews."""
        order = "LSB" if sys.byteorder == "little" else "MSB"
        line = w * self._pixel
        bands = []
        for i in range(self.spec.count):
            ovr = "".join(
                f'<Overview><SourceFilename relativeToVRT="1">{name}</SourceFilename>'
                f"<SourceBand>{i + 1}</SourceBand></Overview>"
                for name in overviews
            )
            bands.append(
                f'<VRTRasterBand dataType="{_GDAL_TYPES[self.dtype.name]}" band="{i + 1}" '
                'subClass="VRTRawRasterBand">'
                f'<SourceFilename relativeToVRT="1">{raw.name}</SourceFilename>'
                f"<ImageOffset>{i * self.dtype.itemsize}</ImageOffset>"
                f"<PixelOffset>{self._pixel}</PixelOffset><LineOffset>{line}</LineOffset>"
                f"<ByteOrder>{order}</ByteOrder>{ovr}</VRTRasterBand>"
            )
        return f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">{"".join(bands)}</VRTDataset>'

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """``pwrite`` until every byte is written (regular files may write short)."""
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def _pread_all(fd: int, n: int, offset: int) -> bytes:
    """``pread`` until ``n`` bytes are read (regular files may read short)."""
    parts, got = [], 0
    while got < n:
        chunk = os.pread(fd, n - got, offset + got)
        if not chunk:
            raise OutputError(f"internal error: stage file ends {n - got} bytes early")
        parts.append(chunk)
        got += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)
