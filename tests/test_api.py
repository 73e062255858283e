"""The Python API: ``pansharp.fuse`` returns what ``pansharp fuse`` writes, lazily."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from affine import Affine

import pansharp
from tests.batch_data import MS_BANDS, PAN
from tests.cli import run_cli
from tiling.rows import TASK_TILES

rioxarray = pytest.importorskip("rioxarray")


def _cli(tmp_path, capsys, pan, ms, *extra):
    out = tmp_path / "cli.tif"
    code, _, err = run_cli(["fuse", str(pan), *map(str, ms), "-o", str(out), "-q", *extra], capsys)
    assert code == 0, err
    return out


def _same(da, path):
    with rasterio.open(path) as ds:
        assert np.array_equal(da.values, ds.read())
        assert da.dtype == ds.dtypes[0]
        assert da.rio.crs == ds.crs and da.rio.transform() == ds.transform
        assert da.attrs["PANSHARP_METHOD"] == ds.tags()["PANSHARP_METHOD"]


@pytest.mark.parametrize("method", ["gsa", "fusionnet"])
def test_api_equals_cli_on_the_sample(method, tmp_path, capsys):
    da = pansharp.fuse(str(PAN), [str(p) for p in MS_BANDS], method=method, tile=128)
    assert da.chunks is not None and da.dims == ("band", "y", "x")
    out = _cli(tmp_path, capsys, PAN, MS_BANDS, "-m", method, "--tile", "128")
    _same(da.compute(), out)
    da.rio.to_raster(tmp_path / "rio.tif")  # the user's own writer, from our georeference
    with rasterio.open(tmp_path / "rio.tif") as a, rasterio.open(out) as b:
        assert np.array_equal(a.read(), b.read()) and a.transform == b.transform


def test_api_equals_cli_on_a_3000_scene(make_scene, tmp_path, capsys):
    s = make_scene(pan_shape=(3000, 3000), ratio=4, seed=2, nodata=0, nodata_box=(0, 0, 400, 700))
    da = pansharp.fuse(s.pan, s.ms, method="mtf-glp-hpm")
    assert len(da.chunks[1]) == math.ceil(3000 / (512 * TASK_TILES))
    out = _cli(tmp_path, capsys, s.pan, s.ms, "-m", "mtf-glp-hpm")
    _same(da.compute(), out)
    assert da.attrs["_FillValue"] == 0


def test_dataarray_inputs(tmp_path, capsys):
    pan = rioxarray.open_rasterio(PAN)
    ms = [rioxarray.open_rasterio(p) for p in MS_BANDS]
    da = pansharp.fuse(pan, ms, method="brovey", sensor="landsat8")
    out = _cli(tmp_path, capsys, PAN, MS_BANDS, "-m", "brovey", "--sensor", "landsat8")
    _same(da.compute(), out)


def test_unknown_option_and_bad_input_are_refused():
    from errors import OptionError

    with pytest.raises(OptionError, match="unknown fuse option"):
        pansharp.fuse(str(PAN), [str(MS_BANDS[0])], method="gsa", tiles=3)
    with pytest.raises(OptionError, match="file path or an xarray.DataArray"):
        pansharp.fuse(42, [str(MS_BANDS[0])])


def test_a_large_scene_has_a_bounded_graph(tmp_path):
    """20000 x 20000: one chunk per strip of TASK_TILES tiles, full width (no pixel read
    to build it: sparse files, the bit depth given)."""
    side, ratio = 20000, 4
    t = Affine(0.5, 0, 500000.0, 0, -0.5, 5000000.0)
    for name, n, count, tr in (("pan", side, 1, t), ("ms", side // ratio, 4, t @ Affine.scale(4))):
        with rasterio.open(tmp_path / f"{name}.tif", "w", driver="GTiff", width=n, height=n,
                           count=count, dtype="uint16", crs="EPSG:32631", transform=tr,
                           tiled=True, sparse_ok=True):  # fmt: skip
            pass
    da = pansharp.fuse(str(tmp_path / "pan.tif"), [str(tmp_path / "ms.tif")], method="brovey",
                       bit_depth=11)  # fmt: skip
    strips = math.ceil(side / (512 * TASK_TILES))
    assert da.shape == (4, side, side) and len(da.chunks[1]) == strips
    assert len(da.data.__dask_graph__()) <= 3 * strips + 1  # strip, its array, its concat; prepared
