"""Sub-pixel registration of the MS on the PAN grid, ratios, overlap, reprojection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from raster.scene import open_scene
from tests.conftest import SAMPLE
from tiling.fuse import FuseOptions, fuse_files

SAMPLE_PAN = str(SAMPLE / "LC80200392015216_B8.tif")
SAMPLE_MS = [str(SAMPLE / f"LC80200392015216_B{b}.tif") for b in (2, 3, 4, 5)]


def test_landsat_ms_centres_fall_on_odd_pan_pixels():
    """Landsat's PAN grid is offset by 7.5 m: MS sample j is centred on PAN pixel 2j + 1."""
    scene = open_scene(SAMPLE_PAN, SAMPLE_MS)
    assert scene.ratio == 2
    a, b = scene.col_map
    j = np.arange(10)
    assert np.allclose(a * (2 * j + 1) + b, j)
    a, b = scene.row_map
    assert np.allclose(a * (2 * j + 1) + b, j)


def test_exp_passes_through_the_ms_samples(tmp_path):
    """The 23-tap interpolator is interpolating: on the Landsat grid, EXP at PAN pixel
    (2j+1, 2k+1) is exactly MS pixel (j, k). A half-pixel registration error fails this."""
    out = tmp_path / "exp.tif"
    fuse_files(SAMPLE_PAN, SAMPLE_MS, str(out), FuseOptions(method="exp", dtype="float32"))
    with rasterio.open(out) as o:
        fused = o.read()
    ms = np.stack([rasterio.open(p).read(1) for p in SAMPLE_MS]).astype(np.float64)
    samples = fused[:, 1::2, 1::2][:, : ms.shape[1], : ms.shape[2]]
    np.testing.assert_allclose(samples, ms[:, : samples.shape[1], : samples.shape[2]], atol=0.01)


def _ramp_pair(tmp: Path, offset_px: float, ratio: int) -> tuple[str, str]:
    """MS whose value is the easting of its pixel centre; PAN constant."""
    px = 2.0
    h, w = 40, 48
    ms_t = Affine(px * ratio, 0, 1000.0 + offset_px * px, 0, -px * ratio, 9000.0 - offset_px * px)
    cols = np.arange(w)
    east = ms_t.c + (cols + 0.5) * ms_t.a
    ms = np.broadcast_to(east, (h, w)).astype("float32")
    with rasterio.open(
        tmp / "ms.tif",
        "w",
        driver="GTiff",
        count=1,
        height=h,
        width=w,
        dtype="float32",
        crs="EPSG:32633",
        transform=ms_t,
    ) as ds:
        ds.write(ms, 1)
    with rasterio.open(
        tmp / "pan.tif",
        "w",
        driver="GTiff",
        count=1,
        height=h * ratio,
        width=w * ratio,
        dtype="float32",
        crs="EPSG:32633",
        transform=Affine(px, 0, 1000.0, 0, -px, 9000.0),
    ) as ds:
        ds.write(np.ones((h * ratio, w * ratio), "float32"), 1)
    return str(tmp / "pan.tif"), str(tmp / "ms.tif")


@pytest.mark.parametrize("offset", [0.0, 0.5, 0.3, -1.25])
@pytest.mark.parametrize("resampling", ["exp", "cubic", "bilinear"])
def test_ms_lands_where_its_coordinates_say(tmp_path, offset, resampling):
    """A linear ramp in easting is reproduced exactly by every interpolating kernel only
    if each MS sample is placed at its true geographic position on the PAN grid."""
    pan, ms = _ramp_pair(tmp_path, offset, 4)
    out = tmp_path / "o.tif"
    fuse_files(pan, [ms], str(out), FuseOptions(method="exp", resampling=resampling))
    with rasterio.open(out) as o:
        fused = o.read(1).astype(np.float64)
        t = o.transform
    east = t.c + (np.arange(o.width) + 0.5) * t.a
    inner = slice(60, -60)
    np.testing.assert_allclose(
        fused[10:-10, inner], np.broadcast_to(east, fused.shape)[10:-10, inner], atol=1e-2
    )


def test_ratio_tolerates_worldview_pixel_sizes(tmp_path):
    """SpaceNet WorldView-2 tiles: 0.4999935 m PAN and 2.0000966 m MS give ratio 4."""
    from raster.scene import integer_ratio

    assert integer_ratio(0.499993455098410, 2.000096631190103, "test") == 4
    assert integer_ratio(15.0, 30.0, "test") == 2


def test_reprojected_ms_matches_native(tmp_path):
    """An MS delivered in geographic coordinates is warped onto the PAN grid: same result
    as the native-CRS MS (to resampling error) and no shift (a 1-pixel shift costs ~30x)."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    h = w = 64
    yy, xx = np.mgrid[0:h, 0:w]
    ms = (1000 + 300 * np.sin(xx / 9.0) + 200 * np.cos(yy / 7.0)).astype("float32")[None]
    kw = dict(driver="GTiff", count=1, dtype="float32", crs="EPSG:32631")
    with rasterio.open(
        tmp_path / "ms.tif",
        "w",
        height=h,
        width=w,
        transform=Affine(2, 0, 500000, 0, -2, 5000000),
        **kw,
    ) as d:
        d.write(ms)
    with rasterio.open(
        tmp_path / "pan.tif",
        "w",
        height=4 * h,
        width=4 * w,
        transform=Affine(0.5, 0, 500000, 0, -0.5, 5000000),
        **kw,
    ) as d:
        d.write(np.ones((1, 4 * h, 4 * w), "float32"))
    with rasterio.open(tmp_path / "ms.tif") as src:
        t, tw, th = calculate_default_transform(
            src.crs, "EPSG:4326", src.width, src.height, *src.bounds
        )
        prof = src.profile | dict(crs="EPSG:4326", transform=t, width=tw, height=th)
        with rasterio.open(tmp_path / "geo.tif", "w", **prof) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.cubic)
    pan = str(tmp_path / "pan.tif")
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    fuse_files(pan, [str(tmp_path / "ms.tif")], str(a), FuseOptions(method="exp"))
    fuse_files(pan, [str(tmp_path / "geo.tif")], str(b), FuseOptions(method="exp"))
    with rasterio.open(a) as oa, rasterio.open(b) as ob:
        assert ob.crs == oa.crs and ob.transform == oa.transform
        x, y = oa.read(1)[40:-40, 40:-40], ob.read(1)[40:-40, 40:-40]
    assert np.isfinite(y).all()
    assert np.abs(x - y).mean() / x.mean() < 1e-3
