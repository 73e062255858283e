"""A full disk while writing: one line naming the output folder and the lack of space,
exit 5, the temporary folder removed, nothing at OUT (it was a traceback, Errno 28)."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
import rasterio.errors

import raster.cog
import raster.coglayout
import raster.destination
from errors import OutputError
from raster.destination import space_error
from tests.badinput import leftovers
from tests.cli import one_line_error, run_cli

FULL = os.strerror(errno.ENOSPC)


def _argv(s, out: Path, *extra: str) -> list[str]:
    return ["fuse", s.pan, *s.ms, "-m", "brovey", "-o", str(out), "-q", *extra]


def _check_full(code: int, err: str, out: Path) -> None:
    line = one_line_error(code, err, str(out.parent), "out of space", FULL, "-o/--output")
    assert code == 5, line
    assert leftovers(out) == [], "partial output or temporary folder left behind"


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, FULL)


@pytest.mark.parametrize(
    "call",
    ["writev", "pwrite"],  # the framed tiles; the raw overview chunks
)
def test_streaming_writer_disk_full(make_scene, tmp_path, monkeypatch, capsys, call):
    s = make_scene(pan_shape=(1100, 1100))  # several blocks and two overview levels
    out = tmp_path / "out" / "fused.tif"
    out.parent.mkdir()
    monkeypatch.setattr(os, call, _enospc)
    code, _, err = run_cli(_argv(s, out), capsys)
    _check_full(code, err, out)


def test_streaming_writer_disk_full_in_the_final_assembly(
    make_scene, tmp_path, monkeypatch, capsys
):
    """The header, the overviews copied in front of the full resolution: the commit."""
    s = make_scene(pan_shape=(1100, 1100))
    out = tmp_path / "fused.tif"
    monkeypatch.setattr(raster.coglayout, "_pwrite_all", _enospc)
    code, _, err = run_cli(_argv(s, out), capsys)
    _check_full(code, err, out)


def test_quota_is_named_too(make_scene, tmp_path, monkeypatch, capsys):
    s = make_scene(pan_shape=(600, 600))
    out = tmp_path / "fused.tif"

    def edquot(*args, **kwargs):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(os, "writev", edquot)
    code, _, err = run_cli(_argv(s, out), capsys)
    one_line_error(code, err, str(out.parent), "quota", "-o/--output")
    assert code == 5 and leftovers(out) == []


def test_gdal_writer_disk_full_with_libtiffs_message(make_scene, tmp_path, monkeypatch, capsys):
    """GDAL's COG copy fails with libtiff's strerror text in its error chain."""
    s = make_scene(pan_shape=(160, 200))
    out = tmp_path / "fused.tif"

    def copy(*args, **kwargs):
        try:
            raise rasterio.errors.RasterioIOError(f"_tiffWriteProc: {FULL}")
        except rasterio.errors.RasterioIOError as exc:
            raise rasterio.errors.RasterioIOError("Write failed.") from exc

    monkeypatch.setattr(raster.cog.rasterio.shutil, "copy", copy)
    code, _, err = run_cli(_argv(s, out, "--tile", "64"), capsys)
    _check_full(code, err, out)


def test_gdal_writer_disk_full_without_errno(make_scene, tmp_path, monkeypatch, capsys):
    """GDAL's usual words carry no errno; with no space left in the folder they mean it."""
    s = make_scene(pan_shape=(160, 200))
    out = tmp_path / "fused.tif"

    def copy(*args, **kwargs):
        raise rasterio.errors.RasterioIOError("TIFFAppendToStrip:Write error at scanline 0")

    monkeypatch.setattr(raster.cog.rasterio.shutil, "copy", copy)
    monkeypatch.setattr(raster.destination, "_free_bytes", lambda folder: 4096)
    code, _, err = run_cli(_argv(s, out, "--tile", "64"), capsys)
    _check_full(code, err, out)


def test_other_errors_are_left_alone(tmp_path):
    folder, dest = tmp_path, tmp_path / "o.tif"
    assert space_error(OSError(errno.EIO, "I/O error"), folder, dest) is None
    assert space_error(ValueError("bug"), folder, dest) is None
    assert space_error(KeyboardInterrupt(), folder, dest) is None
    # a GDAL error with plenty of space left is not a full disk
    assert space_error(rasterio.errors.RasterioIOError("x"), folder, dest) is None
    err = space_error(OSError(errno.ENOSPC, FULL), folder, dest)
    assert isinstance(err, OutputError) and str(folder) in str(err)


# -- a real full file system, where one can be mounted ---------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A 192 KiB tmpfs (needs root and mount rights; skipped otherwise)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.parametrize("tile", ["64", "512"], ids=["gdal-writer", "streaming-writer"])
def test_real_full_file_system(make_scene, tiny_fs, capsys, tile):
    s = make_scene(pan_shape=(1024, 1024), seed=4)  # ~8 MiB of uint16 pixels
    out = tiny_fs / "fused.tif"
    code, _, err = run_cli(_argv(s, out, "--tile", tile), capsys)
    _check_full(code, err, out)
    assert list(tiny_fs.iterdir()) == []
