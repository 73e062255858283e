"""The streaming COG writer's last step (raster.coglayout): in place or by copy, same COG."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest
import rasterio
from affine import Affine
from rio_cogeo.cogeo import cog_validate

import raster.coglayout as coglayout
import raster.fastcog as fastcog
from raster.cog import RasterSpec
from raster.fastcog import StreamingCogWriter

BLOCK = 256


def _insert_supported(folder) -> bool:
    path = folder / "probe.bin"
    path.write_bytes(b"x" * 10000)
    fd = os.open(path, os.O_RDWR)
    try:
        return coglayout._insert_front(fd, max(4096, os.fstatvfs(fd).f_frsize))
    finally:
        os.close(fd)
        path.unlink()


def _write(path, data: np.ndarray, order: list[tuple[int, int]]) -> StreamingCogWriter:
    """Write ``data`` (B, H, W) block by block in ``order`` (block rows/cols)."""
    b, h, w = data.shape
    spec = RasterSpec(
        count=b, height=h, width=w, dtype=str(data.dtype), nodata=None, crs="EPSG:32631",
        transform=Affine(2.0, 0, 400000.0, 0, -2.0, 4000000.0),
    )  # fmt: skip
    co = {"BLOCKSIZE": str(BLOCK), "PREDICTOR": "2", "NUM_THREADS": "2"}
    with StreamingCogWriter(path, spec, overwrite=False, creation_options=co) as wr:
        for r, c in order:
            r0, c0 = r * BLOCK, c * BLOCK
            wr.write(data[:, r0 : r0 + BLOCK, c0 : c0 + BLOCK], r0, c0)
        wr.commit()
    return wr


def _levels(path) -> list[np.ndarray]:
    out = []
    with rasterio.open(path) as ds:
        n = len(ds.overviews(1))
        out.append(ds.read())
    for k in range(n):
        with rasterio.open(path, overview_level=k) as ds:
            out.append(ds.read())
    return out


@pytest.fixture
def scene_data() -> np.ndarray:
    rng = np.random.default_rng(11)
    h, w = 3 * BLOCK + 37, 4 * BLOCK + 5  # not a multiple of the block: partial edge tiles
    base = rng.integers(0, 4000, (3, h, w)).astype(np.uint16)
    return base


def _order(data: np.ndarray, reverse: bool) -> list[tuple[int, int]]:
    rows, cols = -(-data.shape[1] // BLOCK), -(-data.shape[2] // BLOCK)
    keys = [(r, c) for r in range(rows) for c in range(cols)]
    return keys[::-1] if reverse else keys


def test_in_place_and_copy_give_the_same_cog(scene_data, tmp_path, monkeypatch):
    """Tiles arriving out of order are held back and appended in row-major order, so the
    full-resolution scratch file becomes the output in place; with nothing held back
    (HELD_BYTES = 0) they are appended as they come and the assembly copies. Both are
    valid COGs with the same pixels at every level."""
    if not _insert_supported(tmp_path):
        pytest.skip("this file system cannot insert a range (fallocate INSERT_RANGE)")
    a, b = tmp_path / "in_place.tif", tmp_path / "copy.tif"
    wa = _write(a, scene_data, _order(scene_data, reverse=True))
    monkeypatch.setattr(fastcog, "HELD_BYTES", 0)
    wb = _write(b, scene_data, _order(scene_data, reverse=True))
    assert (wa.assembly, wb.assembly) == ("in-place", "copy")
    for path in (a, b):
        assert cog_validate(str(path), strict=True)[0]
        with rasterio.open(path) as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    la, lb = _levels(a), _levels(b)
    assert len(la) == len(lb) == 4  # 1029 -> 515 -> 258 -> 129 wide
    np.testing.assert_array_equal(la[0], scene_data)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(x, y)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.tif", "in_place.tif"]


def test_in_place_output_has_a_new_files_mode(scene_data, tmp_path):
    """The scratch file that becomes the output gets what a new file gets (0o666 less the
    umask), not a private scratch mode."""
    if not _insert_supported(tmp_path):
        pytest.skip("this file system cannot insert a range (fallocate INSERT_RANGE)")
    old = os.umask(0o022)
    try:
        w = _write(tmp_path / "o.tif", scene_data, _order(scene_data, reverse=False))
    finally:
        os.umask(old)
    assert w.assembly == "in-place"
    assert stat.S_IMODE((tmp_path / "o.tif").stat().st_mode) == 0o644


def test_copy_when_the_file_system_cannot_insert(scene_data, tmp_path, monkeypatch):
    monkeypatch.setattr(coglayout, "_insert_front", lambda fd, length: False)
    w = _write(tmp_path / "o.tif", scene_data, _order(scene_data, reverse=False))
    assert w.assembly == "copy"
    assert cog_validate(str(tmp_path / "o.tif"), strict=True)[0]
    np.testing.assert_array_equal(_levels(tmp_path / "o.tif")[0], scene_data)


def test_row_major_check_reads_the_offsets():
    class L:
        path = None
        offsets = {(0, 0): (0, 10), (0, 1): (18, 5), (1, 0): (31, 7)}

    assert coglayout.in_row_major_order(L())
    L.offsets = {(0, 0): (13, 10), (0, 1): (0, 5), (1, 0): (31, 7)}
    assert not coglayout.in_row_major_order(L())


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_failing_overview_build_leaves_no_descriptor_and_no_file(
    scene_data, tmp_path, monkeypatch
):
    """An error while the second overview level is encoded: every scratch descriptor is
    closed when the writer exits, the scratch folder is gone, nothing is at the output."""
    calls = {"n": 0}
    real = StreamingCogWriter._read_rows

    def failing(self, fd, level, r0, c0, h):
        if level is self.levels[2]:
            calls["n"] += 1
            raise OSError("disk went away")
        return real(self, fd, level, r0, c0, h)

    monkeypatch.setattr(StreamingCogWriter, "_read_rows", failing)
    before = _open_fds()
    with pytest.raises(OSError, match="disk went away"):
        _write(tmp_path / "o.tif", scene_data, _order(scene_data, reverse=False))
    assert calls["n"] >= 1
    assert _open_fds() <= before
    assert list(tmp_path.iterdir()) == []


def test_main_level_written_back_while_overviews_are_built(scene_data, tmp_path, monkeypatch):
    """In place, the full-resolution scratch file goes to disk in a thread while the
    overviews are built (so the range insertion finds no dirty page); copied, it is not
    (it is deleted after the copy)."""
    events: list[tuple[str, int | None]] = []
    real_build = StreamingCogWriter._build_overviews

    def record_write_back(fd: int) -> bool:
        events.append(("write_back", os.fstat(fd).st_ino))
        return coglayout.write_back(fd)

    def record_build(self) -> None:
        events.append(("overviews", os.stat(self.levels[0].path).st_ino))
        real_build(self)

    monkeypatch.setattr(fastcog, "write_back", record_write_back)
    monkeypatch.setattr(StreamingCogWriter, "_build_overviews", record_build)
    w = _write(tmp_path / "a.tif", scene_data, _order(scene_data, reverse=False))
    kinds = sorted(k for k, _ in events)
    assert kinds == ["overviews", "write_back"], events
    assert len({ino for _, ino in events}) == 1, "not the full-resolution scratch file"
    if w.assembly == "in-place":
        assert os.stat(tmp_path / "a.tif").st_ino == events[0][1]
    events.clear()
    monkeypatch.setattr(fastcog, "HELD_BYTES", 0)
    _write(tmp_path / "b.tif", scene_data, _order(scene_data, reverse=True))
    assert [k for k, _ in events] == ["overviews"]
    assert cog_validate(str(tmp_path / "a.tif"), strict=True)[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_write_back_a_file_and_a_closed_descriptor(tmp_path):
    path = tmp_path / "f.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"x" * 100_000)
        assert coglayout.write_back(fd)
    finally:
        os.close(fd)
    assert not coglayout.write_back(fd)  # refused, no exception
    assert path.read_bytes() == b"x" * 100_000
