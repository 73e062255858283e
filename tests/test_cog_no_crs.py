"""A pair with a geotransform but no CRS (a local grid): the output keeps the transform,
with either COG writer (the streaming one wrote it only with a CRS)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from tests.conftest import write_raster
from tiling.fuse import FuseOptions, fuse_files

PAN_T = Affine(2.0, 0, 100.0, 0, -2.0, 900.0)


@pytest.mark.parametrize("tile", [512, 64], ids=["streaming-writer", "gdal-writer"])
def test_geotransform_without_crs_is_kept(tmp_path, tile):
    rng = np.random.default_rng(3)
    pan = rng.integers(100, 4000, (1, 600, 560)).astype("uint16")
    ms = rng.integers(100, 4000, (3, 150, 140)).astype("uint16")
    ms_t = Affine(8.0, 0, 100.0, 0, -8.0, 900.0)
    p = write_raster(tmp_path / "pan.tif", pan, PAN_T, crs=None)
    m = write_raster(tmp_path / "ms.tif", ms, ms_t, crs=None)
    out = tmp_path / "out.tif"
    fuse_files(p, [m], str(out), FuseOptions(method="brovey", tile=tile))
    with rasterio.open(out) as ds:
        assert ds.crs is None
        assert ds.transform.almost_equals(PAN_T)
        assert ds.overviews(1)  # still a COG with overviews
