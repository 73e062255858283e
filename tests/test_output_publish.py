"""The final rename: without --overwrite it never replaces a file, even one that appeared
after the early check (two runs to the same -o); every fallback keeps that promise."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest
import rasterio

import raster.destination as dest_mod
import tiling.fuse
from errors import OutputError
from raster.destination import publish, staged_file
from tests.badinput import leftovers
from tests.cli import one_line_error, run_cli

WRITERS = pytest.mark.parametrize(
    "tile", ["64", "512"], ids=["gdal-writer", "streaming-writer"]
)  # 64: engine tiles smaller than the 512 blocks force GDAL's COG driver (fastcog.supports)


def _appear_after_fusing(monkeypatch, out: Path, content: bytes) -> None:
    """Another run's file lands at ``out`` after the early check, before the commit."""
    real = tiling.fuse.execute

    def run_then_race(*args, **kwargs):
        real(*args, **kwargs)
        out.write_bytes(content)

    monkeypatch.setattr(tiling.fuse, "execute", run_then_race)


@WRITERS
def test_a_file_that_appears_during_the_run_is_not_replaced(
    make_scene, tmp_path, monkeypatch, capsys, tile
):
    s = make_scene(pan_shape=(160, 200))
    out = tmp_path / "out.tif"
    _appear_after_fusing(monkeypatch, out, b"the other run's output")
    argv = ["fuse", s.pan, *s.ms, "-m", "brovey", "-o", str(out), "--tile", tile, "-q"]
    code, _, err = run_cli(argv, capsys)
    one_line_error(code, err, str(out), "--overwrite", "appeared")
    assert code == 5
    assert out.read_bytes() == b"the other run's output"
    assert [p.name for p in leftovers(out)] == ["out.tif"], "temporary folder left behind"


@WRITERS
def test_with_overwrite_the_late_file_is_replaced(make_scene, tmp_path, monkeypatch, capsys, tile):
    s = make_scene(pan_shape=(160, 200))
    out = tmp_path / "out.tif"
    _appear_after_fusing(monkeypatch, out, b"the other run's output")
    argv = ["fuse", s.pan, *s.ms, "-m", "brovey", "-o", str(out), "--tile", tile, "-q"]
    code, _, err = run_cli([*argv, "--overwrite"], capsys)
    assert code == 0, err
    with rasterio.open(out) as ds:
        assert (ds.count, ds.height, ds.width) == (4, 160, 200)
    assert [p.name for p in leftovers(out)] == ["out.tif"]


# -- publish and its fallbacks ---------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "tmp" / "new.tif"
    src.parent.mkdir()
    src.write_bytes(b"new")
    return src, tmp_path / "out.tif"


def _no_renameat2(monkeypatch, err: int = errno.EINVAL) -> None:
    """renameat2 as on a file system without RENAME_NOREPLACE: -1 with ``err``."""

    def fake(*args) -> int:
        ctypes.set_errno(err)
        return -1

    monkeypatch.setattr(dest_mod, "_renameat2", lambda: fake)


def _no_hard_links(monkeypatch) -> None:
    def link(*args, **kwargs):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(dest_mod.os, "link", link)


WAYS = ["renameat2", "link", "placeholder"]


def _use(way: str, monkeypatch) -> None:
    if way != "renameat2":
        _no_renameat2(monkeypatch)
    if way == "placeholder":
        _no_hard_links(monkeypatch)


@pytest.mark.parametrize("way", WAYS)
def test_publish_moves_the_file_keeping_its_inode(pair, monkeypatch, way):
    src, out = pair
    _use(way, monkeypatch)
    ino = src.stat().st_ino
    assert publish(src, out, overwrite=False) == out
    assert out.read_bytes() == b"new" and out.stat().st_ino == ino
    assert not src.exists()


@pytest.mark.parametrize("way", WAYS)
def test_publish_never_replaces_without_overwrite(pair, monkeypatch, way):
    src, out = pair
    _use(way, monkeypatch)
    out.write_bytes(b"old")
    with pytest.raises(OutputError, match="--overwrite") as info:
        publish(src, out, overwrite=False)
    assert info.value.exit_code == 5
    assert out.read_bytes() == b"old"
    assert src.read_bytes() == b"new"  # still in the temporary folder, which is removed later


def test_publish_does_not_follow_a_symlink_at_the_destination(pair, tmp_path):
    src, out = pair
    target = tmp_path / "target.tif"
    target.write_bytes(b"target")
    out.symlink_to(target)
    with pytest.raises(OutputError, match="appeared"):
        publish(src, out, overwrite=False)
    assert target.read_bytes() == b"target"


def test_publish_overwrite_replaces(pair):
    src, out = pair
    out.write_bytes(b"old")
    publish(src, out, overwrite=True)
    assert out.read_bytes() == b"new"


def test_publish_reports_other_failures_as_output_errors(pair, monkeypatch):
    src, out = pair
    _no_renameat2(monkeypatch, errno.EACCES)  # not a "no such call" errno: no fallback
    with pytest.raises(OutputError, match="cannot move the finished output") as info:
        publish(src, out, overwrite=False)
    assert "Permission denied" in str(info.value)
    assert not out.exists()


def test_renameat2_is_used_where_available(pair):
    """On Linux with glibc 2.28+ the first way is the real one (the other tests fake it)."""
    if dest_mod._renameat2() is None:
        pytest.skip("no renameat2 in this C library")
    src, out = pair
    fn = dest_mod._renameat2()
    a, b = os.fsencode(src), os.fsencode(out)
    out.write_bytes(b"old")
    assert fn(dest_mod._AT_FDCWD, a, dest_mod._AT_FDCWD, b, dest_mod._RENAME_NOREPLACE) == -1
    assert ctypes.get_errno() in (errno.EEXIST, *dest_mod._NO_RENAMEAT2)


def test_staged_file_publishes_on_success_only(tmp_path):
    out = tmp_path / "report.json"
    with staged_file(out, overwrite=True, flag="--json") as tmp:
        assert tmp.parent.parent == tmp_path and not out.exists()
        tmp.write_text("{}")
    assert out.read_text() == "{}"
    with pytest.raises(RuntimeError), staged_file(out, overwrite=True, flag="--json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert out.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
