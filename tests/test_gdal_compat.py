"""Brovey agrees with gdal_pansharpen.py (Debian's gdal-bin) on the same inputs."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import rasterio

from tiling.fuse import FuseOptions, fuse_files

GDAL_PANSHARPEN = shutil.which("gdal_pansharpen.py") or shutil.which("gdal_pansharpen")

pytestmark = pytest.mark.skipif(
    GDAL_PANSHARPEN is None, reason="gdal_pansharpen.py not installed (apt-get install gdal-bin)"
)


@pytest.mark.parametrize(
    ("resampling", "weights", "dtype"),
    [
        ("cubic", [0.1, 0.4, 0.4, 0.1], "uint16"),
        ("bilinear", None, "uint16"),
        ("cubic", [0.3, 0.3, 0.4], "uint8"),
    ],
)
def test_brovey_matches_gdal(make_scene, tmp_path, resampling, weights, dtype):
    bands = len(weights) if weights else 4
    s = make_scene(pan_shape=(403, 517), ratio=4, bands=bands, dtype=dtype, seed=5)
    ours, theirs = tmp_path / "ours.tif", tmp_path / "gdal.tif"
    fuse_files(
        s.pan,
        s.ms,
        str(ours),
        FuseOptions(method="brovey", resampling=resampling, band_weights=weights, tile=128),
    )
    cmd = [GDAL_PANSHARPEN, s.pan, *s.ms, str(theirs), "-r", resampling, "-q", "-of", "GTiff"]
    for w in weights or []:
        cmd += ["-w", str(w)]
    subprocess.run(cmd, check=True)
    with rasterio.open(ours) as a, rasterio.open(theirs) as b:
        assert a.shape == b.shape and a.transform == b.transform
        x, y = a.read().astype(np.int64), b.read().astype(np.int64)
    close = (np.abs(x - y) <= 1).mean()
    assert close >= 0.999, f"only {close:.4%} of pixels within 1 DN of gdal_pansharpen"
