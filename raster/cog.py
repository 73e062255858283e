"""Writing the result as a Cloud-Optimized GeoTIFF without ever leaving a half-written file.

Tiles arrive in any order, but a COG must be written in one sequential copy (overviews
and IFDs first). So tiles go to an intermediate tiled GeoTIFF in a hidden temporary
folder *beside* the destination (same file system, so the final step is an atomic
``os.replace``), GDAL's COG driver copies it with the user's creation options and
builds the overviews, and only then is the result renamed to the destination. Any
error or interruption removes the temporary folder, so the destination is either the
complete new file or whatever was there before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from errors import OutputError


def check_destination(dest: str | os.PathLike, overwrite: bool) -> Path:
    """Fail early (before any work) if ``dest`` cannot be written."""
    path = Path(dest)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"output {path} is a folder; give a file name with -o/--output")
    if path.exists() and not overwrite:
        raise OutputError(f"output {path} exists; pass --overwrite to replace it")
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} does not exist; create it or change -o/--output")
    try:  # a real probe: os.access says yes to root even on read-only file systems
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"output folder {folder} is not writable ({exc.strerror}); change -o/--output"
        ) from None
    return path


class CogWriter:
    """Context manager: ``write`` tiles, then ``commit`` converts to COG and renames."""

    def __init__(
        self,
        dest: str | os.PathLike,
        *,
        overwrite: bool,
        count: int,
        height: int,
        width: int,
        dtype: str,
        crs: Any,
        transform: Any,
        nodata: float | None,
        creation_options: dict[str, str],
        descriptions: list[str | None] | None = None,
        colorinterp: list | None = None,
        tags: dict[str, str] | None = None,
        band_tags: list[dict[str, str]] | None = None,
    ) -> None:
        self.dest = check_destination(dest, overwrite)
        self.count, self.height, self.width = count, height, width
        self.dtype = dtype
        self.crs, self.transform, self.nodata = crs, transform, nodata
        self.creation_options = creation_options
        self.descriptions = descriptions
        self.colorinterp = colorinterp
        self.tags = tags or {}
        self.band_tags = band_tags
        self._tmpdir: Path | None = None
        self._ds: Any = None

    def __enter__(self) -> CogWriter:
        folder = self.dest.parent if str(self.dest.parent) else Path(".")
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.", dir=folder))
        block = int(self.creation_options.get("BLOCKSIZE", 512))
        self._ds = rasterio.open(
            self._tmpdir / "stage.tif",
            "w",
            driver="GTiff",
            count=self.count,
            height=self.height,
            width=self.width,
            dtype=self.dtype,
            crs=self.crs,
            transform=self.transform,
            nodata=self.nodata,
            tiled=True,
            blockxsize=block,
            blockysize=block,
            interleave="band",
            compress="none",
            BIGTIFF="IF_SAFER",
            SPARSE_OK="TRUE",
        )
        return self

    def write(self, block: np.ndarray, row: int, col: int) -> None:
        """Write a (B, h, w) block whose top-left pixel is (row, col)."""
        self._ds.write(block, window=Window(col, row, block.shape[2], block.shape[1]))

    # Same two-step interface as the streaming writer: nothing to do in the workers.
    def encode(self, block: np.ndarray, row: int, col: int) -> tuple[np.ndarray, int, int]:
        return block, row, col

    def put(self, encoded: tuple[np.ndarray, int, int]) -> None:
        self.write(*encoded)

    def commit(self) -> Path:
        """Finish the stage file, copy it to COG beside the destination, rename."""
        ds = self._ds
        if self.descriptions:
            for i, d in enumerate(self.descriptions, start=1):
                if d:
                    ds.set_band_description(i, d)
        if self.colorinterp:
            try:
                ds.colorinterp = self.colorinterp
            except Exception:  # GDAL refuses some combinations (e.g. alpha); keep defaults
                pass
        if self.tags:
            ds.update_tags(**self.tags)
        if self.band_tags:
            for i, t in enumerate(self.band_tags, start=1):
                if t:
                    ds.update_tags(i, **t)
        ds.close()
        self._ds = None
        assert self._tmpdir is not None
        cog = self._tmpdir / "final.tif"
        opts = {k.upper(): v for k, v in self.creation_options.items()}
        opts.setdefault("OVERVIEWS", "AUTO")
        opts.setdefault("BIGTIFF", "IF_SAFER")
        rasterio.shutil.copy(self._tmpdir / "stage.tif", cog, driver="COG", **opts)
        os.replace(cog, self.dest)
        return self.dest

    def __exit__(self, *exc: object) -> None:
        if self._ds is not None:
            try:
                self._ds.close()
            except Exception:
                pass
            self._ds = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
