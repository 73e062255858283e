"""GDAL's COG writer's stage (raster.stage): raw pixels from any thread, then a VRT with
its overviews that the COG driver copies; a full disk while staging is one line."""

from __future__ import annotations

import errno
import os
import threading

import numpy as np
import pytest
import rasterio
from affine import Affine

from raster.cog import RasterSpec
from raster.overviews import downsample2
from raster.stage import RawStage
from tests.badinput import leftovers
from tests.cli import one_line_error, run_cli
from tiling.windows import plan_tiles

GEO = dict(crs="EPSG:32631", transform=Affine(0.5, 0, 5e5, 0, -0.5, 5e6))


def _spec(data: np.ndarray, nodata=None) -> RasterSpec:
    b, h, w = data.shape
    return RasterSpec(count=b, height=h, width=w, dtype=data.dtype.name, nodata=nodata, **GEO)


@pytest.mark.parametrize(
    ("dtype", "nodata"), [("uint16", None), ("int16", -7), ("float32", float("nan"))]
)
def test_tiles_from_many_threads_come_back_through_the_vrt(tmp_path, dtype, nodata):
    """Tiles of 48 (edge tiles ragged) written by 4 threads in reverse order, then a
    full-width strip over them: GDAL reads the VRT back as the array, with georeferencing,
    nodata, and overviews that are raster.overviews' halvings."""
    rng = np.random.default_rng(3)
    data = (rng.normal(0, 900, (3, 131, 157))).astype(dtype)
    if nodata is not None:
        data[:, :20, :33] = nodata
    stage = RawStage(tmp_path, _spec(data, nodata))
    tiles = plan_tiles(131, 157, 48, 0)[::-1]
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not tiles:
                    return
                t = tiles.pop()
            piece = data[:, t.row : t.row + t.height, t.col : t.col + t.width]
            stage.write(piece, t.row, t.col)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stage.write(data[:, 60:70], 60, 0)  # full rows: the one-write path
    ds = stage.finish([(66, 79), (33, 40)], "AVERAGE")
    ds.close()
    with rasterio.open(stage.vrt_path) as ds:
        np.testing.assert_array_equal(ds.read(), data)
        assert (ds.crs, ds.transform) == (GEO["crs"], GEO["transform"])
        assert ds.nodata == nodata or (np.isnan(ds.nodata) and np.isnan(nodata))
        assert len(ds.overviews(1)) == 2
    level = np.moveaxis(data, 0, -1)
    for k, (h, w) in enumerate([(66, 79), (33, 40)]):
        level = downsample2(level, nodata, "AVERAGE")
        with rasterio.open(stage.vrt_path, overview_level=k) as ov:
            assert (ov.height, ov.width) == (h, w)
            np.testing.assert_array_equal(ov.read(), np.moveaxis(level, -1, 0))


def test_blocks_outside_the_stage_are_refused(tmp_path):
    stage = RawStage(tmp_path, _spec(np.zeros((2, 10, 10), np.uint8)))
    with pytest.raises(ValueError, match="outside"):
        stage.write(np.zeros((2, 4, 4), np.uint8), 8, 0)
    with pytest.raises(ValueError, match="outside"):
        stage.write(np.zeros((3, 4, 4), np.uint8), 0, 0)
    stage.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_disk_full_while_staging_is_one_line(make_scene, tmp_path, monkeypatch, capsys):
    """GDAL's writer (64-pixel tiles): the stage's ``pwrite`` fails with ENOSPC in a worker
    thread; one line naming the folder and the lack of space, exit 5, nothing left."""
    s = make_scene(pan_shape=(256, 256))
    out = tmp_path / "fused.tif"
    real = os.pwrite

    def pwrite(fd, data, offset):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("stage.raw"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    code, _, err = run_cli(
        ["fuse", s.pan, *s.ms, "-m", "brovey", "--tile", "64", "-o", str(out), "-q"], capsys
    )
    one_line_error(code, err, str(out.parent), os.strerror(errno.ENOSPC))
    assert code == 5
    assert leftovers(out) == []
