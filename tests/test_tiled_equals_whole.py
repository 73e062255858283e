"""Tiled equals whole on real scenes with their real geotransforms, for every classical method.

The WorldView-2 tiles carry 0.499993 m / 2.000097 m pixels (ratio 4.0002, as real
products do) and the Landsat 8 scene a PAN grid offset by 7.5 m from the MS grid. A
tile-relative sample phase made seams of up to 65535 DN there (MTF-GLP-HPM); every
quantity a tile uses is now a function of scene coordinates. Integer outputs must agree
within 1 DN (rounding), float32 outputs within 1e-5 relative.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from models.registry import REGISTRY, model_names
from tests.conftest import SHARED, needs_shared
from tiling.fuse import FuseOptions, fuse_files

CLASSICAL = [m for m in model_names() if not REGISTRY[m].info.needs_weights]  # weighted: own tests
TILES = (64, 160, 512)
WHOLE = 4096  # larger than every scene here: one tile

WV2 = SHARED / "spacenet6_wv2_tiles"
L8 = SHARED / "landsat8_lc80200392015216"
SCENES = {
    **{f"wv2-{i}": (WV2 / f"pan{i}.tif", [WV2 / f"ms{i}.tif"]) for i in (1, 2, 3)},
    "landsat8": (L8 / "test_B8.tif", [L8 / f"test_B{b}.tif" for b in (2, 3, 4, 5)]),
}


def _fuse(pan: Path, ms: list[Path], out: Path, method: str, tile: int, **kw) -> np.ndarray:
    opts = FuseOptions(method=method, tile=tile, threads=2, **kw)
    fuse_files(str(pan), [str(p) for p in ms], str(out), opts)
    with rasterio.open(out) as ds:
        return ds.read()


@needs_shared()
@pytest.mark.parametrize("scene", sorted(SCENES))
@pytest.mark.parametrize("method", CLASSICAL)
def test_tiled_equals_whole_integer(scene: str, method: str, tmp_path: Path) -> None:
    pan, ms = SCENES[scene]
    if not pan.exists():
        pytest.skip(f"{pan} not present")
    whole = _fuse(pan, ms, tmp_path / "whole.tif", method, WHOLE).astype(np.int64)
    for tile in TILES:
        tiled = _fuse(pan, ms, tmp_path / f"t{tile}.tif", method, tile).astype(np.int64)
        diff = np.abs(tiled - whole)
        assert diff.max() <= 1, (
            f"{method} --tile {tile} on {scene}: {int((diff > 1).sum())} pixels differ by "
            f"more than 1 DN (max {int(diff.max())})"
        )


@needs_shared("spacenet6_wv2_tiles")
@pytest.mark.parametrize("method", CLASSICAL)
def test_tiled_equals_whole_float32(method: str, tmp_path: Path) -> None:
    pan, ms = SCENES["wv2-1"]
    whole = _fuse(pan, ms, tmp_path / "whole.tif", method, WHOLE, dtype="float32")
    tiled = _fuse(pan, ms, tmp_path / "t64.tif", method, 64, dtype="float32")
    ok = np.isfinite(whole)
    assert np.array_equal(ok, np.isfinite(tiled))
    scale = np.abs(whole[ok]).max()
    np.testing.assert_allclose(tiled[ok], whole[ok], rtol=1e-5, atol=1e-5 * scale)


def _stretch_ms(path: str, ratio: float) -> None:
    """Rewrite the MS pixel size to ``ratio`` PAN pixels (e.g. 4.0002), origin kept."""
    with rasterio.open(path, "r+") as ds:
        t = ds.transform
        px = t.a / round(t.a / 0.5)
        ds.transform = Affine(px * ratio, 0, t.c, 0, -px * ratio, t.f)


@pytest.mark.parametrize("method", ["mtf-glp-hpm", "mtf-glp", "pca", "pracs", "awlp", "bdsd-pc"])
def test_tiled_equals_whole_on_a_non_integer_ratio(make_scene, method: str, tmp_path) -> None:
    """Synthetic, awkward size, ratio 4.0002: runs without ../shared/data."""
    s = make_scene(pan_shape=(300, 284), ratio=4, bands=4, seed=3)
    _stretch_ms(s.ms[0], 4.0002)
    ms = [Path(p) for p in s.ms]
    whole = _fuse(Path(s.pan), ms, tmp_path / "whole.tif", method, WHOLE).astype(np.int64)
    for tile in (64, 112):
        tiled = _fuse(Path(s.pan), ms, tmp_path / f"t{tile}.tif", method, tile)
        assert np.abs(tiled.astype(np.int64) - whole).max() <= 1, (method, tile)
