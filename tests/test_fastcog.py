"""The streaming COG writer against GDAL's COG driver: same pixels, valid layout, metadata."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from raster.cog import RasterSpec
from raster.fastcog import StreamingCogWriter, downsample2, interleave, supports
from tiling.fuse import FuseOptions, fuse_files

# An option the streaming writer does not implement forces GDAL's COG driver.
GDAL_PATH = {"SPARSE_OK": "TRUE"}


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "float32"])
def test_streaming_writer_matches_gdal_cog_driver(make_scene, tmp_path, dtype):
    s = make_scene(pan_shape=(1100, 1300), ratio=4, bands=3, dtype=dtype, seed=3)
    fast, slow = tmp_path / "fast.tif", tmp_path / "slow.tif"
    fuse_files(s.pan, s.ms, str(fast), FuseOptions(method="brovey"))
    fuse_files(s.pan, s.ms, str(slow), FuseOptions(method="brovey", creation_options=GDAL_PATH))
    valid, errors, warnings = cog_validate(str(fast), strict=True)
    assert valid, (errors, warnings)
    with rasterio.open(fast) as a, rasterio.open(slow) as b:
        assert np.array_equal(a.read(), b.read())
        assert a.overviews(1) == b.overviews(1) == [2, 4]
        assert (a.crs, a.transform, a.dtypes) == (b.crs, b.transform, b.dtypes)
        # float inputs: NaN is the nodata (never == itself)
        assert a.nodata == b.nodata or (np.isnan(a.nodata) and np.isnan(b.nodata))
        assert a.block_shapes[0] == (512, 512)
        assert a.compression.name == "deflate"
        assert a.tags()["PANSHARP_METHOD"] == "brovey"
        full = a.read()
        ovr = a.read(out_shape=(3, a.height // 2, a.width // 2))
    # first overview: the 2x2 mean of the full resolution (round half up for integers)
    h2, w2 = full.shape[1] // 2 * 2, full.shape[2] // 2 * 2
    mean = full[:, :h2, :w2].astype(np.float64).reshape(3, h2 // 2, 2, w2 // 2, 2).mean(axis=(2, 4))
    if np.dtype(dtype).kind in "iu":
        mean = np.floor(mean + 0.5)
    np.testing.assert_allclose(ovr[:, : h2 // 2, : w2 // 2], mean, rtol=1e-6, atol=1e-3)


def test_metadata_nodata_and_bigtiff(make_scene, tmp_path):
    s = make_scene(pan_shape=(700, 600), ratio=4, bands=3, nodata=0, nodata_box=(0, 0, 128, 256))
    with rasterio.open(s.ms[0], "r+") as ds:
        ds.descriptions = ("red", "green", "blue")
        ds.colorinterp = [rasterio.enums.ColorInterp[c] for c in ("red", "green", "blue")]
    out = tmp_path / "big.tif"
    fuse_files(
        s.pan, s.ms, str(out), FuseOptions(method="exp", creation_options={"BIGTIFF": "YES"})
    )
    assert out.read_bytes()[2:4] == b"\x2b\x00", "not a BigTIFF"
    assert cog_validate(str(out), strict=True)[0]
    with rasterio.open(out) as o:
        assert o.descriptions == ("red", "green", "blue")
        assert [c.name for c in o.colorinterp] == ["red", "green", "blue"]
        assert o.nodata == 0
        arr = o.read()
        ovr = o.read(out_shape=(3, 350, 300))
    assert (arr[:, 8:120, 8:248] == 0).all()
    assert (ovr[:, 4:60, 4:124] == 0).all(), "nodata not kept in the overview"
    assert (ovr[:, 100:, 150:] != 0).all()


def test_downsample_is_nodata_aware():
    a = np.array([[[4], [0]], [[8], [0]]], dtype=np.uint16)  # (2, 2, 1), nodata 0
    assert downsample2(a, 0, "AVERAGE")[0, 0, 0] == 6
    assert downsample2(np.zeros((2, 2, 1), np.uint16), 0, "AVERAGE")[0, 0, 0] == 0
    odd = np.arange(9, dtype=np.uint16).reshape(3, 3, 1)
    assert downsample2(odd, None, "AVERAGE").shape == (2, 2, 1)


@pytest.mark.parametrize(
    ("src", "dst"), [("uint16", "uint16"), ("float32", "uint16"), ("float64", "float32")]
)
@pytest.mark.parametrize("bands", [1, 3, 8])
def test_interleave_is_moveaxis_and_cast(src, dst, bands):
    rng = np.random.default_rng(bands)
    block = (rng.random((bands, 37, 53)) * 4000).astype(src)
    got = interleave(block, np.dtype(dst))
    assert got.shape == (37, 53, bands) and got.dtype == np.dtype(dst)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, np.moveaxis(block.astype(dst), 0, -1))


@pytest.mark.parametrize("dtype", ["uint16", "int16", "uint8", "float32"])
@pytest.mark.parametrize("nodata", [None, 0])
@pytest.mark.parametrize("resampling", ["AVERAGE", "NEAREST"])
def test_downsample_planes_equals_interleaved(dtype, nodata, resampling):
    """The full resolution is halved from its band planes, the overview levels from their
    interleaved pixels: both layouts give the same overview, odd sizes included."""
    rng = np.random.default_rng(7)
    for shape in [(4, 64, 64), (3, 37, 53), (1, 1, 1)]:
        planes = (rng.random(shape) * 200 - (50 if dtype == "int16" else 0)).astype(dtype)
        if nodata is not None:
            planes[:, : shape[1] // 2] = 0
        got = downsample2(planes, nodata, resampling, band_axis=0)
        want = downsample2(interleave(planes, planes.dtype), nodata, resampling)
        assert got.shape == (shape[0], *want.shape[:2])
        np.testing.assert_array_equal(interleave(got, planes.dtype), want)


def test_supports_and_fallback():
    assert supports({"COMPRESS": "DEFLATE", "PREDICTOR": "YES", "BLOCKSIZE": "512"}, 512)
    assert supports({"BLOCKSIZE": "256"}, 1024)
    assert not supports({"COMPRESS": "ZSTD"}, 512)
    assert not supports({"BLOCKSIZE": "512"}, 64)  # engine tiles must be whole blocks
    assert not supports({"SPARSE_OK": "TRUE"}, 512)


def test_unaligned_block_is_a_bug(tmp_path):
    spec = RasterSpec(count=1, height=600, width=600, dtype="uint8")
    w = StreamingCogWriter(tmp_path / "o.tif", spec, overwrite=False, creation_options={})
    with w, pytest.raises(ValueError, match="aligned"):
        w.encode(np.zeros((1, 10, 10), np.uint8), 5, 0)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("bigtiff", ["NO", "YES"])
def test_layout_is_cog_with_framed_row_major_tiles(make_scene, tmp_path, bigtiff):
    """GDAL reports LAYOUT=COG: every level's tiles lie in row-major order, smaller levels
    first, each with its size before it and its last 4 bytes after it (as the ghost
    header's BLOCK_LEADER/BLOCK_TRAILER promise); tiles are computed out of order by
    several threads, so the assembly must reorder them."""
    s = make_scene(pan_shape=(1500, 1100), ratio=4, bands=3, seed=5)
    out = tmp_path / "cog.tif"
    opts = FuseOptions(method="brovey", threads=2, creation_options={"BIGTIFF": bigtiff})
    fuse_files(s.pan, s.ms, str(out), opts)
    raw = out.read_bytes()
    firsts = []
    for level in (None, 0, 1):
        kw = {} if level is None else {"overview_level": level}
        with rasterio.open(out, **kw) as ds:
            if level is None:
                assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            rows, cols = -(-ds.height // 512), -(-ds.width // 512)
            offsets = []
            for r in range(rows):
                for c in range(cols):
                    off = int(ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1))
                    size = int(ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1))
                    assert int.from_bytes(raw[off - 4 : off], "little") == size
                    assert raw[off + size : off + size + 4] == raw[off + size - 4 : off + size]
                    offsets.append(off)
        assert offsets == sorted(offsets) and len(offsets) == rows * cols
        firsts.append(offsets[0])
    assert firsts[2] < firsts[1] < firsts[0], "smaller overviews must come first"
    assert cog_validate(str(out), strict=True)[0]
