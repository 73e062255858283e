"""``pansharp evaluate`` streamed over small tiles equals the whole-array protocol.

The reference numbers are built here on whole arrays: Wald's pair with
``physics.degrade.wald_pair``, each method run as a single tile by the fuse engine, the
indexes with ``quality.reduced_resolution_indexes`` / ``full_resolution_indexes``
(quality.md A and B). The evaluation under test streams everything in 96-pixel tiles.

Tolerance: 1e-8 relative (the brief allows ~1e-6; the observed worst difference on
this scene is 3e-14). The streamed and whole computations differ only in the order of
float64 sums: the methods' global coefficients are sums over tiles (fit pass),
PAN_LR's resize is a matrix product over a window instead of the whole axis (the
extra terms are exact zeros, but BLAS groups the sums differently), and the
accumulators add per-tile partial sums. Q2n rounds to uint16, so a value within
~1e-13 of a .5 boundary could round differently and move one of its block values by
~1e-5; 1e-8 leaves no room for that, and it does not happen on this seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from physics.degrade import degraded_ms_transform, wald_pair
from physics.sensors import get_sensor
from quality import full_resolution_indexes, reduced_resolution_indexes
from quality.eval_degrade import degrade_scene, reduced_geometry
from quality.evaluate import evaluate_methods
from raster.radiometry import decide_bit_depth
from raster.scene import open_scene
from tiling.executor import run_method
from tiling.fuse import FuseOptions, build_context
from tiling.reader import TileReader
from tiling.windows import TileSpec

RTOL = 1e-8
METHODS = ["gsa", "mtf-glp"]


def read_cube(paths: list[str]) -> np.ndarray:
    bands = []
    for p in paths:
        with rasterio.open(p) as ds:
            bands.extend(ds.read().astype(np.float64))
    return np.stack(bands)


def whole_fuse(scene, method: str, ctx) -> np.ndarray:
    """The method on the whole scene as one tile (float64)."""
    h, w = scene.out_shape
    out = np.full((scene.n_bands, h, w), np.nan)

    def sink(spec, fused, valid):
        out[:, spec.row : spec.row + spec.height, spec.col : spec.col + spec.width] = fused

    run_method(scene, method, ctx, sink, tile=max(h, w), threads=1, dtype=np.float64)
    assert np.isfinite(out).all()
    return out


@pytest.fixture
def scene_paths(make_scene):
    # 352 x 320 PAN, ratio 4: an 88 x 80 GT (cut area 47 x 39: not multiples of 32)
    return make_scene(pan_shape=(352, 320), ratio=4, bands=4, dtype="uint16", seed=3)


def test_streamed_degradation_equals_wald_pair(scene_paths, tmp_path):
    scene = open_scene(scene_paths.pan, scene_paths.ms)
    geom = reduced_geometry(scene)
    assert (geom.rows, geom.cols) == (88, 80)
    gains = get_sensor("generic").gains(4)
    out = tmp_path / "lr"
    out.mkdir()
    pair = degrade_scene(scene, geom, gains, str(out), tile=96, threads=2)
    pan = read_cube([scene_paths.pan])[0]
    ms = read_cube(scene_paths.ms)
    pan_lr, ms_lr = wald_pair(pan, ms, gains, 4)
    with rasterio.open(pair.ms_lr) as ds:
        assert ds.transform == degraded_ms_transform(geom.transform, 4)
        np.testing.assert_allclose(ds.read(), ms_lr, rtol=1e-12, atol=1e-9)
    with rasterio.open(pair.pan_lr) as ds:
        assert ds.transform == geom.transform
        np.testing.assert_allclose(ds.read(1), pan_lr, rtol=1e-12, atol=1e-9)


def test_reduced_streamed_equals_whole(scene_paths, tmp_path):
    streamed = evaluate_methods(
        scene_paths.pan, scene_paths.ms, METHODS, protocol="reduced", tile=96, threads=2
    )
    assert [r["scale"] for r in streamed["results"]] == ["reduced"] * len(METHODS)
    # whole arrays from the degraded files (themselves checked against wald_pair above)
    scene = open_scene(scene_paths.pan, scene_paths.ms)
    sensor = get_sensor(streamed["protocol"]["sensor"])
    L = streamed["protocol"]["bit_depth"]
    # uint16, no NBITS, generic sensor: fuse's rule (raster.radiometry) decides
    assert L == decide_bit_depth(scene, sensor, None).bits
    folder = tmp_path / "lr"
    folder.mkdir()
    pair = degrade_scene(scene, reduced_geometry(scene), sensor.gains(4), str(folder))
    lr = open_scene(pair.pan_lr, [pair.ms_lr])
    assert lr.out_shape == (88, 80)
    ctx = build_context(lr, sensor, FuseOptions(), L)
    from dataclasses import replace

    ctx = replace(ctx, max_value=None)
    gt = read_cube(scene_paths.ms)
    for res in streamed["results"]:
        fused = whole_fuse(lr, res["method"], ctx)
        whole = reduced_resolution_indexes(fused, gt, ratio=4, bit_depth=L)
        for k, v in whole.items():
            assert res[k] == pytest.approx(v, rel=RTOL, abs=1e-12), (res["method"], k)


def test_full_streamed_equals_whole(scene_paths):
    streamed = evaluate_methods(
        scene_paths.pan, scene_paths.ms, METHODS, protocol="full", tile=96, threads=2
    )
    assert [r["scale"] for r in streamed["results"]] == ["full"] * len(METHODS)
    scene = open_scene(scene_paths.pan, scene_paths.ms)
    sensor = get_sensor(streamed["protocol"]["sensor"])
    ctx = build_context(scene, sensor, FuseOptions(), streamed["protocol"]["bit_depth"])
    h, w = scene.out_shape
    assert streamed["scene"]["full_grid"] == [h, w] == [352, 320]
    reader = TileReader(scene, ctx, resampling="exp", dtype=np.float64)
    tile = reader.read(TileSpec(0, 0, 0, h, w, 0))  # EXP(MS) and PAN, whole scene
    reader.close()
    ms = read_cube(scene_paths.ms)
    for res in streamed["results"]:
        fused = whole_fuse(scene, res["method"], ctx)
        whole = full_resolution_indexes(fused, tile.pan, ms, tile.ms, 4, ctx.ms_gains)
        for k, v in whole.items():
            assert res[k] == pytest.approx(v, rel=RTOL, abs=1e-12), (res["method"], k)
