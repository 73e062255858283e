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
from dataclasses import dataclass, field
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
    """The streaming writer when it implements every option, else GDAL's COG driver."""
    from raster.fastcog import StreamingCogWriter, supports

    cls = StreamingCogWriter if supports(creation_options, tile) else CogWriter
    return cls(dest, spec, overwrite=overwrite, creation_options=creation_options)


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
        self.spec = spec
        self.creation_options = creation_options
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
            count=self.spec.count,
            height=self.spec.height,
            width=self.spec.width,
            dtype=self.spec.dtype,
            crs=self.spec.crs,
            transform=self.spec.transform,
            nodata=self.spec.nodata,
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
