"""The tile reader's building blocks: banded separable resampling and the shared MS strips."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from physics.kernels import axis_matrix
from raster.scene import open_scene
from tiling.fuse import FuseOptions, build_context, resolve_bit_depth, resolve_sensor
from tiling.reader import StripCache, TileReader, separable_apply
from tiling.windows import plan_tiles


@pytest.mark.parametrize("kernel", ["exp", "cubic", "bilinear", "nearest", "lanczos"])
@pytest.mark.parametrize(("ratio", "n_out"), [(2, 150), (4, 300), (4, 517)])
def test_separable_apply_equals_dense_per_band(kernel, ratio, n_out):
    """The banded, chunked product equals rmat @ band @ cmat for every band, including
    matrices with empty rows (outside any sample) and sizes not a multiple of the chunk."""
    rng = np.random.default_rng(ratio + n_out)
    n_in = n_out // ratio + 12
    cube = rng.random((3, n_in, n_in + 5))
    rows = np.arange(n_out) / ratio + 4.3
    cols = np.arange(n_out + 7) / ratio + 3.1
    rmat = axis_matrix(rows, n_in, kernel)
    cmat = axis_matrix(cols, n_in + 5, kernel).T
    rmat[:9] = 0.0  # rows whose weights reach nothing
    out = separable_apply(cube, rmat, cmat)
    dense = np.stack([rmat @ band @ cmat for band in cube])
    assert out.shape == dense.shape == (3, n_out, n_out + 7)
    np.testing.assert_allclose(out, dense, rtol=1e-12, atol=1e-12)


def test_strip_cache_loads_each_key_once_across_threads():
    calls: list[int] = []
    lock = threading.Lock()

    def load(key: int) -> list[int]:
        with lock:
            calls.append(key)
        time.sleep(0.05)  # the others arrive while the first one loads
        return [key]

    cache = StripCache(load, keep=2)
    got: list[list[int]] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(7))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [7] and got == [[7]] * 6
    cache.get(8)
    cache.get(9)  # keep=2: 7 is evicted and loaded again when asked
    cache.get(7)
    assert calls == [7, 8, 9, 7]


def test_strip_cache_failed_load_is_retried():
    attempts = []

    def load(key: int) -> int:
        attempts.append(key)
        if len(attempts) == 1:
            raise OSError("transient")
        return key

    cache = StripCache(load)
    with pytest.raises(OSError):
        cache.get(1)
    assert cache.get(1) == 1 and attempts == [1, 1]


def test_reader_loads_one_ms_strip_per_row_of_tiles(make_scene, monkeypatch):
    """Tiles of one row share one full-width MS strip: the MS is read once per tile row,
    not once per tile and band."""
    paths = make_scene(pan_shape=(300, 268), ratio=4)
    scene = open_scene(paths.pan, paths.ms)
    sensor = resolve_sensor(scene, None)
    ctx = build_context(scene, sensor, FuseOptions(), resolve_bit_depth(scene, sensor, None))
    loads: list[tuple[int, int]] = []
    orig = TileReader._load_ms_strip

    def counting(self, rows):
        loads.append(rows)
        return orig(self, rows)

    monkeypatch.setattr(TileReader, "_load_ms_strip", counting)
    reader = TileReader(scene, ctx, resampling="cubic")
    specs = plan_tiles(*scene.out_shape, 64, 3)
    tiles = [reader.read(s) for s in specs]
    whole = reader.read(plan_tiles(*scene.out_shape, 1024, 3)[0])
    reader.close()
    n_rows = len({s.row for s in specs})
    assert len(specs) > n_rows and len(loads) == n_rows + 1
    ref = whole.ms[(slice(None), *whole.core)]
    for s, t in zip(specs, tiles, strict=True):  # strips give what a whole read gives
        core = ref[:, s.row : s.row + s.height, s.col : s.col + s.width]
        np.testing.assert_allclose(t.ms[(slice(None), *t.core)], core, rtol=1e-6, atol=1e-3)


def test_resampling_matrices_are_computed_once_per_row_and_column_span(make_scene, monkeypatch):
    """A 3 x 3 grid of tiles needs three row spans and three column spans: at most six
    matrices (a row span and a column span with the same positions share one), not
    eighteen; the cached ones give the same tiles as computing them afresh."""
    paths = make_scene(pan_shape=(300, 268), ratio=4, seed=3)
    scene = open_scene(paths.pan, paths.ms)
    sensor = resolve_sensor(scene, None)
    ctx = build_context(scene, sensor, FuseOptions(), resolve_bit_depth(scene, sensor, None))
    made: list[int] = []
    real = axis_matrix

    def counting(pos, n_in, kernel):
        made.append(n_in)
        return real(pos, n_in, kernel)

    monkeypatch.setattr("tiling.reader.axis_matrix", counting)
    specs = plan_tiles(300, 268, 112, 6)
    assert len({s.row for s in specs}) == 3 and len({s.col for s in specs}) == 3
    reader = TileReader(scene, ctx, resampling="exp")
    try:
        tiles = [reader.read(s) for s in specs]
        assert 3 <= len(made) <= 6
        for spec, tile in zip(specs, tiles, strict=True):  # a fresh reader, empty cache
            fresh = TileReader(scene, ctx, resampling="exp")
            try:
                again = fresh.read(spec)
            finally:
                fresh.close()
            np.testing.assert_array_equal(tile.ms, again.ms)
            np.testing.assert_array_equal(tile.sample_rows, again.sample_rows)
    finally:
        reader.close()


def test_resampling_cache_stays_bounded(make_scene, monkeypatch):
    """Past AXIS_CACHE entries the oldest go; tiles read through a tiny cache are the
    tiles read through a large one."""
    import tiling.reader as reader_mod

    paths = make_scene(pan_shape=(300, 268), ratio=4, seed=3)
    scene = open_scene(paths.pan, paths.ms)
    sensor = resolve_sensor(scene, None)
    ctx = build_context(scene, sensor, FuseOptions(), resolve_bit_depth(scene, sensor, None))
    specs = plan_tiles(300, 268, 112, 6)
    big = TileReader(scene, ctx, resampling="exp")
    try:
        want = [big.read(s).ms for s in specs]
    finally:
        big.close()
    monkeypatch.setattr(reader_mod, "AXIS_CACHE", 2)
    small = TileReader(scene, ctx, resampling="exp")
    try:
        for spec, ms in zip(specs, want, strict=True):
            np.testing.assert_array_equal(small.read(spec).ms, ms)
            assert len(small._axis_cache) <= 2
    finally:
        small.close()


@pytest.mark.parametrize("amap", [(1 / 4.0002454, -0.3750077), (0.25, -0.375), (0.5, -0.25)])
def test_sample_grid_depends_on_scene_indices_only(amap) -> None:
    """Sample positions, their grid positions and the block phase of a sub-range equal
    the whole range's, shifted: no tile-relative phase (the seams of ratio 4.0002)."""
    from tiling.reader import sample_grid

    ratio = round(1 / amap[0])
    whole = np.arange(-68, 668)
    pos, lr, phase = sample_grid(whole, amap, ratio)
    for start, size in ((444, 224), (-68, 200), (300, 97)):
        sub = np.arange(start, start + size)
        p2, lr2, ph2 = sample_grid(sub, amap, ratio)
        shift = start - whole[0]
        expect = pos[(pos >= shift) & (pos < shift + size)] - shift
        np.testing.assert_array_equal(p2, expect)
        # positions differ by a whole number of samples: the first sample's index
        k = lr[shift : shift + size] - lr2
        np.testing.assert_allclose(k, np.round(k[0]), atol=1e-9)
        assert ph2 == (phase - shift) % ratio
