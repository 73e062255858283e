"""Every output is reopened: COG validity, CRS, transform, blocks, overviews, metadata, nodata."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from tiling.fuse import FuseOptions, fuse_files


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_output_is_valid_cog_with_pan_geometry(make_scene, tmp_path, dtype):
    s = make_scene(pan_shape=(600, 520), ratio=4, bands=4, dtype=dtype, single_band_files=True)
    out = tmp_path / "out.tif"
    fuse_files(s.pan, s.ms, str(out), FuseOptions(method="brovey", tile=128))
    valid, errors, _ = cog_validate(str(out), strict=True)
    assert valid, errors
    with rasterio.open(s.pan) as pan, rasterio.open(out) as o:
        assert o.crs == pan.crs
        assert o.transform == pan.transform
        assert (o.height, o.width) == (pan.height, pan.width)
        assert o.count == 4
        assert o.dtypes[0] == dtype
        assert o.block_shapes[0] == (512, 512)
        assert o.overviews(1), "no overviews"
        assert o.tags()["PANSHARP_METHOD"] == "brovey"
        assert o.profile["compress"].lower() == "deflate"


def test_band_descriptions_colorinterp_and_creation_options(make_scene, tmp_path):
    s = make_scene(pan_shape=(256, 256), ratio=4, bands=3)
    with rasterio.open(s.ms[0], "r+") as ds:
        for i, name in enumerate(["red", "green", "blue"], start=1):
            ds.set_band_description(i, name)
        ds.colorinterp = [
            rasterio.enums.ColorInterp.red,
            rasterio.enums.ColorInterp.green,
            rasterio.enums.ColorInterp.blue,
        ]
    out = tmp_path / "out.tif"
    opts = FuseOptions(
        method="exp", profile="zstd", creation_options={"BLOCKSIZE": "256", "LEVEL": "3"}
    )
    fuse_files(s.pan, s.ms, str(out), opts)
    with rasterio.open(out) as o:
        assert o.descriptions == ("red", "green", "blue")
        assert o.colorinterp[0] == rasterio.enums.ColorInterp.red
        assert o.profile["compress"].lower() == "zstd"
        assert o.block_shapes[0] == (256, 256)


def test_nodata_stays_nodata(make_scene, tmp_path):
    s = make_scene(pan_shape=(256, 256), ratio=4, bands=4, nodata=0, nodata_box=(0, 0, 96, 128))
    out = tmp_path / "out.tif"
    fuse_files(s.pan, s.ms, str(out), FuseOptions(method="brovey", tile=64))
    with rasterio.open(out) as o:
        assert o.nodata == 0
        arr = o.read()
    assert (arr[:, 8:88, 8:120] == 0).all(), "nodata area was filled"
    assert (arr[:, 100:, 130:] != 0).all(), "valid data turned into nodata"


def _fitted_methods() -> list[str]:
    from models.registry import REGISTRY, model_names

    return [n for n in model_names() if REGISTRY[n].info.needs_fit]


@pytest.mark.parametrize("method", _fitted_methods())
def test_nodata_never_enters_statistics(make_scene, tmp_path, method):
    """The same scene with its nodata area holding 0 (nodata=0) or 65535 (nodata=65535):
    if nodata entered any global statistic the two outputs would differ."""
    s = make_scene(pan_shape=(256, 256), ratio=4, nodata=0, nodata_box=(0, 0, 64, 64))
    outs = []
    for k, nd in enumerate([0, 65535]):
        if nd:
            for path in [s.pan, *s.ms]:
                with rasterio.open(path, "r+") as ds:
                    arr = ds.read()
                    arr[arr == 0] = nd
                    ds.write(arr)
                    ds.nodata = nd
        out = tmp_path / f"o{k}.tif"
        fuse_files(s.pan, s.ms, str(out), FuseOptions(method=method, tile=64, dtype="float32"))
        with rasterio.open(out) as o:
            outs.append(o.read())
    far = (slice(None), slice(128, None), slice(128, None))
    np.testing.assert_allclose(outs[0][far], outs[1][far], rtol=1e-5, atol=1e-3)


def test_mask_band_becomes_nodata(make_scene, tmp_path):
    """An MS with a GDAL mask band (no nodata value): masked pixels come out as nodata."""
    s = make_scene(pan_shape=(256, 256), ratio=4, bands=3)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(s.ms[0], "r+") as ds:
        mask = np.full((ds.height, ds.width), 255, np.uint8)
        mask[:16, :16] = 0
        ds.write_mask(mask)
    out = tmp_path / "o.tif"
    fuse_files(s.pan, s.ms, str(out), FuseOptions(method="brovey"))
    with rasterio.open(out) as o:
        assert o.nodata == 0
        arr = o.read()
    assert (arr[:, 4:60, 4:60] == 0).all()
    assert (arr[:, 80:, 80:] != 0).all()
