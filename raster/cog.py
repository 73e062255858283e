"""Writing the result as a Cloud-Optimized GeoTIFF without ever leaving a half-written file.

Tiles arrive in any order, but a COG must be written in one sequential copy (overviews
and IFDs first). So tiles go to an intermediate raw image (:mod:`raster.stage`, written
without GDAL) in a hidden temporary folder *beside* the destination (same file system,
so the final step is an atomic rename), GDAL's COG driver copies it with the user's
creation options and builds the overviews, and only then is the result renamed to the destination
(:func:`raster.destination.publish`: a file there is replaced only with ``--overwrite``,
even one that appeared during the run). Any error or interruption removes the temporary
folder, so the destination is either the complete new file or whatever was there
before; a run killed outright leaves its folder to the next run into the same folder
(:class:`raster.destination.TempFolder`).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil

from raster.destination import (
    COG_SUFFIXES,
    TempFolder,
    check_destination,
    publish,
)
from raster.stage import RawStage, plan_overviews

__all__ = ["CogWriter", "RasterSpec", "check_destination", "open_writer"]


@dataclass(frozen=True)
class RasterSpec:
    """What an output raster is: size, type, georeferencing and band metadata."""

    count: int
    height: int
    width: int
    dtype: str
    crs: Any = None
    transform: Any = None
    nodata: float | None = None
    descriptions: list[str | None] | None = None
    colorinterp: list | None = None
    tags: dict[str, str] = field(default_factory=dict)


def open_writer(
    dest: str | os.PathLike,
    spec: RasterSpec,
    *,
    overwrite: bool,
    creation_options: dict[str, str],
    tile: int,
) -> CogWriter | Any:
    """The streaming writer when it implements every option, else GDAL's COG driver.

    Checked here too, for library callers (the CLI refuses both earlier): the name is a
    COG's, and every creation option is one GDAL's COG driver knows, with a valid value.
    """
    from raster.creation_options import check_creation_options
    from raster.fastcog import StreamingCogWriter, supports

    check_destination(dest, overwrite, suffixes=COG_SUFFIXES)
    check_creation_options(creation_options)
    cls = StreamingCogWriter if supports(creation_options, tile) else CogWriter
    return cls(dest, spec, overwrite=overwrite, creation_options=creation_options)


@dataclass(frozen=True)
class RawBlock:
    """A (B, h, w) block at (row, col), made in another process for :meth:`CogWriter.put`."""

    block: np.ndarray
    row: int
    col: int


class RawBlocks:
    """GDAL's COG writer cannot take compressed tiles: another process sends pixels."""

    def encode(self, block: np.ndarray, row: int, col: int) -> RawBlock:
        return RawBlock(np.ascontiguousarray(block), row, col)


class CogWriter:
    """Context manager: ``write`` tiles, then ``commit`` converts to COG and renames."""

    def __init__(
        self,
        dest: str | os.PathLike,
        spec: RasterSpec,
        *,
        overwrite: bool,
        creation_options: dict[str, str],
    ) -> None:
        self.dest = check_destination(dest, overwrite)
        self.overwrite = overwrite
        self.spec = spec
        self.creation_options = creation_options
        self._staging = TempFolder(self.dest)
        self._tmpdir: Path | None = None
        self._ds: Any = None
        self._stage: RawStage | None = None
        self._quiet = False  # libtiff's stderr handler off (see _quiet_libtiff)

    def __enter__(self) -> CogWriter:
        self._tmpdir = self._staging.__enter__()
        try:
            _quiet_libtiff(True)
            self._quiet = True
            self._open_stage()
        except BaseException:
            self.__exit__(*sys.exc_info())  # removes the folder; a full disk: OutputError
            raise
        return self

    def _open_stage(self) -> None:
        assert self._tmpdir is not None
        # raw pixels, written by the workers; no GDAL dataset is open for writing while
        # they read with GDAL (it lost tiles: raster.stage explains why)
        self._stage = RawStage(self._tmpdir, self.spec)

    def write(self, block: np.ndarray, row: int, col: int) -> None:
        """Write a (B, h, w) block whose top-left pixel is (row, col)."""
        self._stage.write(block, row, col)  # type: ignore[union-attr]

    # Same two-step interface as the streaming writer: the worker stores its own tile.
    def encode(self, block: np.ndarray, row: int, col: int) -> None:
        self.write(block, row, col)

    def put(self, encoded: RawBlock | None) -> None:
        """Nothing for a block this process stored itself (``encode``); a block encoded
        elsewhere (:meth:`remote_encoder`) is written here."""
        if encoded is not None:
            self.write(encoded.block, encoded.row, encoded.col)

    def remote_encoder(self) -> RawBlocks:
        """What another process needs to hand blocks to :meth:`put` (picklable)."""
        return RawBlocks()

    def commit(self) -> Path:
        """Finish the stage file, copy it to COG beside the destination, rename."""
        assert self._stage is not None
        # the overviews of raster.overviews, as the streaming writer's (not GDAL's)
        levels, resampling, opts = plan_overviews(self.spec, self.creation_options)
        self._ds = self._stage.finish(levels, resampling)  # the VRT, for band metadata
        ds, spec = self._ds, self.spec
        if spec.descriptions:
            for i, d in enumerate(spec.descriptions, start=1):
                if d:
                    ds.set_band_description(i, d)
        if spec.colorinterp:
            try:
                ds.colorinterp = spec.colorinterp
            except Exception:  # GDAL refuses some combinations (e.g. alpha); keep defaults
                pass
        if spec.tags:
            ds.update_tags(**spec.tags)
        ds.close()
        self._ds = None
        assert self._tmpdir is not None
        cog = self._tmpdir / "final.tif"
        opts.setdefault("OVERVIEWS", "AUTO")
        opts.setdefault("BIGTIFF", "IF_SAFER")
        rasterio.shutil.copy(self._stage.vrt_path, cog, driver="COG", **opts)
        return publish(cog, self.dest, self.overwrite)

    def __exit__(self, *exc: Any) -> None:
        if self._ds is not None:
            try:
                self._ds.close()
            except Exception:
                pass
            self._ds = None
        if self._stage is not None:
            self._stage.close()
            self._stage = None
        self._tmpdir = None
        if self._quiet:
            _quiet_libtiff(False)
            self._quiet = False
        self._staging.__exit__(*exc)  # removes the folder; a full disk: OutputError


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved: int | None = None


def _quiet_libtiff(on: bool) -> None:
    """While a GDAL writer is open, libtiff's process-wide error handler prints nothing.

    Why: a failed write (a full disk) makes libtiff print ``_tiffWriteProc: No space left
    on device.`` straight to stderr through that default handler, beside the one line the
    CLI prints; GDAL's own handler, which turns libtiff's errors into the exceptions the
    writer sees, is unaffected. Counted, so that writers open at once restore the handler
    once, at the last exit. Nothing happens where libtiff is not reachable (a GDAL built
    with its internal, renamed copy).
    """
    global _quiet_depth, _quiet_saved
    setter = _tiff_set_error_handler()
    if setter is None:
        return
    with _quiet_lock:
        if on:
            if _quiet_depth == 0:
                _quiet_saved = setter(None)
            _quiet_depth += 1
        elif _quiet_depth > 0:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                setter(_quiet_saved)
                _quiet_saved = None


@functools.cache
def _tiff_set_error_handler() -> Callable[[int | None], int | None] | None:
    """libtiff's ``TIFFSetErrorHandler`` (returns the previous handler), looked up from
    rasterio's extension module, whose dependencies include GDAL's libtiff; or None."""
    try:
        import rasterio._base

        fn = ctypes.CDLL(rasterio._base.__file__).TIFFSetErrorHandler
    except (OSError, AttributeError, ImportError):
        return None
    fn.argtypes = [ctypes.c_void_p]
    fn.restype = ctypes.c_void_p
    return fn
