"""Every output profile writes the same COG apart from its codec: the same overviews, pixel
for pixel, and the same head layout (every IFD before any tile offset array, as GDAL's
COG driver lays it out), whichever writer made it (deflate and raw: the streaming writer;
zstd and lzw: GDAL's COG driver)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rio_cogeo.cogeo import cog_validate

from raster.cog import RasterSpec
from raster.fastcog import supports
from raster.overviews import overview_sizes
from raster.profiles import PROFILES, get_profile
from raster.stage import plan_overviews
from raster.tiff import read_ifd_chain
from tiling.fuse import FuseOptions, fuse_files

TILE_ARRAYS = (324, 325)  # TileOffsets, TileByteCounts


def _levels(path: Path) -> list[np.ndarray]:
    """The full resolution and every overview, as GDAL reads them."""
    with rasterio.open(path) as ds:
        out = [ds.read()]
        n = len(ds.overviews(1))
    for k in range(n):
        with rasterio.open(path, overview_level=k) as ov:
            out.append(ov.read())
    return out


def _streaming(profile: str, extra: dict[str, str]) -> bool:
    """Whether fuse writes this profile with the streaming writer (default tile)."""
    return supports({**get_profile(profile), **extra}, 512)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


@pytest.mark.parametrize(
    "extra",
    [{}, {"OVERVIEW_RESAMPLING": "NEAREST"}, {"OVERVIEW_COUNT": "5"}],
    ids=["average", "nearest", "count5"],
)
def test_every_profile_writes_the_same_overviews(make_scene, tmp_path, extra):
    """2100 x 1300 (level 3 halves an odd 525 rows), nodata in a box with odd edges (2x2
    windows with 1 to 3 valid samples): each profile's levels equal deflate's exactly."""
    s = make_scene(pan_shape=(2100, 1300), ratio=4, bands=3, nodata=0, nodata_box=(0, 0, 301, 405))
    assert {_streaming(p, extra) for p in PROFILES} == {True, False}, "one writer only"
    levels = {}
    for profile in PROFILES:
        out = tmp_path / f"{profile}.tif"
        opts = FuseOptions(method="brovey", profile=profile, creation_options=dict(extra))
        fuse_files(s.pan, s.ms, str(out), opts)
        valid, errors, warnings = cog_validate(str(out), strict=True)
        assert valid, (profile, errors, warnings)
        levels[profile] = _levels(out)
    ref = levels["deflate"]
    sizes = [(2100, 1300), *overview_sizes(2100, 1300, 512, extra)]
    assert [lv.shape[1:] for lv in ref] == sizes
    assert len(ref) == (6 if "OVERVIEW_COUNT" in extra else 4)
    for profile, got in levels.items():
        assert len(got) == len(ref), profile
        for k, (a, b) in enumerate(zip(got, ref, strict=True)):
            assert a.shape == b.shape, f"{profile} level {k}: {a.shape}, deflate's {b.shape}"
            assert _same(a, b), f"{profile} level {k}: {np.sum(a != b)} pixels differ from deflate"


def _mean2(x: np.ndarray, nodata: int) -> np.ndarray:
    """Reference 2x2 nodata-aware mean of a (B, h, w) integer level with even sides,
    rounded half up: written out here independently of raster.overviews."""
    b, h, w = x.shape
    blocks = x.reshape(b, h // 2, 2, w // 2, 2).astype(np.float64)
    ok = blocks != nodata
    n = ok.sum(axis=(2, 4))
    total = np.where(ok, blocks, 0).sum(axis=(2, 4))
    mean = np.floor(total / np.maximum(n, 1) + 0.5)
    return np.where(n == 0, nodata, mean)


def test_first_overview_is_the_nodata_aware_mean(make_scene, tmp_path):
    """Level 1 of both writers is the 2x2 mean of the valid samples, nodata where none is;
    and GDAL's own AVERAGE gives the same numbers where a level is exactly half the size
    (unsigned integers with nodata), which is what the streaming writer has always done."""
    s = make_scene(pan_shape=(1200, 1100), ratio=4, bands=3, nodata=0, nodata_box=(0, 0, 301, 405))
    outs = {}
    for profile in ("deflate", "zstd"):
        outs[profile] = tmp_path / f"{profile}.tif"
        fuse_files(s.pan, s.ms, str(outs[profile]), FuseOptions(method="brovey", profile=profile))
    full, first = _levels(outs["deflate"])[:2]
    want = _mean2(full, 0)
    windows = (full != 0).reshape(3, 600, 2, 550, 2).sum(axis=(2, 4))
    assert ((windows > 0) & (windows < 4)).any(), "no window mixes data and nodata"
    for profile, path in outs.items():
        np.testing.assert_array_equal(_levels(path)[1], want, err_msg=profile)
    gdal = tmp_path / "gdal.tif"
    rasterio.shutil.copy(outs["deflate"], gdal, driver="COG", COMPRESS="LZW",
                         OVERVIEWS="IGNORE_EXISTING", OVERVIEW_RESAMPLING="AVERAGE")  # fmt: skip
    np.testing.assert_array_equal(_levels(gdal)[1], first)


def _head_layout(path: Path) -> tuple[int, int, int]:
    """(end of the last IFD or non-array value, first tile offset array position, first
    tile's data position) of a TIFF."""
    data = path.read_bytes()
    chain = read_ifd_chain(data)
    head_end, arrays_start, first_tile = 0, len(data), len(data)
    for ifd in chain:
        head_end = max(head_end, ifd.position + ifd.size)
        for code, (at, n) in ifd.out_of_line().items():
            if code in TILE_ARRAYS:
                arrays_start = min(arrays_start, at)
            else:
                head_end = max(head_end, at + n)
        first_tile = min(first_tile, min(o for o in ifd.values(data, 324) if o))
    return head_end, arrays_start, first_tile


@pytest.mark.parametrize("bigtiff", ["NO", "YES"])
def test_every_profile_puts_every_ifd_before_the_tile_arrays(make_scene, tmp_path, bigtiff):
    """Header, ghost area, every IFD with its small values; then the tile offset and byte
    count arrays; then the tiles. GDAL's COG driver (``gdal_translate -of COG``) writes its
    files so; each profile's file and a GDAL copy of it are checked alike."""
    s = make_scene(pan_shape=(1200, 1100), ratio=4, bands=3)
    files = []
    for profile in PROFILES:
        out = tmp_path / f"{profile}.tif"
        opts = FuseOptions(method="brovey", profile=profile, creation_options={"BIGTIFF": bigtiff})
        fuse_files(s.pan, s.ms, str(out), opts)
        files.append(out)
    gdal = tmp_path / "gdal.tif"
    rasterio.shutil.copy(files[0], gdal, driver="COG", COMPRESS="DEFLATE", BIGTIFF=bigtiff)
    for path in [*files, gdal]:
        assert len(read_ifd_chain(path.read_bytes())) == 3, path.name  # 1200 -> 600 -> 300
        assert path.read_bytes()[2] == (43 if bigtiff == "YES" else 42), path.name
        head_end, arrays_start, first_tile = _head_layout(path)
        assert head_end <= arrays_start < first_tile, (path.name, head_end, arrays_start)


def test_overview_sizes_follow_one_rule():
    """AUTO: halve (rounding up) while a side exceeds the block; OVERVIEW_COUNT: exactly
    that many, none past 1 x 1; NONE: none."""
    assert overview_sizes(1025, 700, 512, {}) == [(513, 350), (257, 175)]
    assert overview_sizes(512, 512, 512, {}) == []
    assert overview_sizes(600, 520, 512, {"OVERVIEW_COUNT": "3"}) == [(300, 260), (150, 130),
                                                                     (75, 65)]  # fmt: skip
    assert overview_sizes(3, 2, 512, {"OVERVIEW_COUNT": "9"}) == [(2, 1), (1, 1)]
    assert overview_sizes(5000, 5000, 512, {"OVERVIEWS": "NONE"}) == []


def test_gdal_writer_leaves_only_other_resamplings_to_gdal():
    spec = RasterSpec(count=1, height=2000, width=900, dtype="uint16")
    sizes, how, opts = plan_overviews(spec, {"COMPRESS": "ZSTD", "OVERVIEW_COUNT": "2"})
    assert (sizes, how) == ([(1000, 450), (500, 225)], "AVERAGE")
    assert opts["OVERVIEWS"] == "FORCE_USE_EXISTING" and "OVERVIEW_COUNT" not in opts
    sizes, how, opts = plan_overviews(spec, {"OVERVIEW_RESAMPLING": "cubic"})
    assert (sizes, how) == ([], "CUBIC") and "OVERVIEWS" not in opts  # GDAL computes them
    sizes, _, opts = plan_overviews(spec, {"OVERVIEWS": "FORCE_USE_EXISTING"})
    assert sizes == [] and opts["OVERVIEWS"] == "FORCE_USE_EXISTING"  # the stage has none
