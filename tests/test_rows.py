"""A scene fused as row ranges (tiling.rows) equals the whole run, for every method.

Row ranges are how one scene is split across machines (``fuse --scheduler``) and how
the lazy API chunks it: each task fuses output rows [r0, r1) with the whole scene's
tile or patch plan. Every registered method, on an awkward size with a true ratio of
4.0002, in tasks of one tile row: the written files are pixel-identical (same
arithmetic on the same patches), overviews included.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio

import tiling.rows as rows_mod
from models.registry import model_names
from tests.test_tiled_equals_whole import _stretch_ms
from tiling.executor import check_rows
from tiling.fuse import FuseOptions, fuse_files
from tiling.rows import local_rows_map, row_ranges

TILE = 64


def _pickled_map(fn, tasks, prepared):
    """Like a cluster: every task and the prepared method go through pickle."""
    shared = pickle.loads(pickle.dumps(prepared))
    return (fn(pickle.loads(pickle.dumps(t)), shared) for t in tasks)


@pytest.mark.parametrize("method", model_names())
def test_row_tasks_equal_the_whole_run(method, make_scene, tmp_path, monkeypatch):
    monkeypatch.setattr(rows_mod, "TASK_TILES", 1)
    s = make_scene(pan_shape=(300, 228), ratio=4, bands=4, seed=5)
    _stretch_ms(s.ms[0], 4.0002)
    opts = dict(method=method, tile=TILE, sensor="landsat-r4", threads=1)
    if method in model_names("deep"):  # patches from the receptive field, strips of TILE rows
        opts["weights"] = str(_weights(method))
    if method in model_names("diffusion"):  # small seeded weights, 3 sampler steps
        from tests.diffusion_weights import write_weights

        w = write_weights(method, tmp_path / "w.safetensors", sensor="landsat-r4")
        opts.update(weights=str(w), steps=3, seed=2)
    whole, split = tmp_path / "whole.tif", tmp_path / "split.tif"
    fuse_files(s.pan, s.ms, str(whole), FuseOptions(**opts))
    fuse_files(s.pan, s.ms, str(split), FuseOptions(**opts), rows_map=_pickled_map)
    with rasterio.open(whole) as a, rasterio.open(split) as b:
        assert a.profile == b.profile and a.tags() == b.tags()
        assert np.array_equal(a.read(), b.read()), method
        assert a.overviews(1) == b.overviews(1)
        for k in range(len(a.overviews(1))):
            shape = (a.count, *(-(-n // 2 ** (k + 1)) for n in (a.height, a.width)))
            assert np.array_equal(a.read(out_shape=shape), b.read(out_shape=shape))


def _weights(method: str) -> Path:
    from models.deep.weights import default_weights_path

    return default_weights_path(method, "landsat-r4")


def test_local_map_keeps_the_task_order(make_scene, tmp_path, monkeypatch):
    monkeypatch.setattr(rows_mod, "TASK_TILES", 1)
    s = make_scene(pan_shape=(200, 160), ratio=4, seed=1)
    seen = []

    def spy(fn, tasks, prepared):
        for res in local_rows_map(fn, tasks, prepared):
            seen.append(res.rows)
            yield res

    fuse_files(s.pan, s.ms, str(tmp_path / "o.tif"), FuseOptions(tile=TILE), rows_map=spy)
    assert seen == [(0, 64), (64, 128), (128, 192), (192, 200)]


def test_row_ranges_and_their_checks():
    assert row_ranges(1000, 128, 4) == [(0, 512), (512, 1000)]
    assert row_ranges(100, 128, 4) == [(0, 100)]
    check_rows((128, 300), 128, 300)  # the last strip may end at the height
    for bad in [(64, 128), (0, 100), (0, 0), (256, 512)]:
        with pytest.raises(ValueError, match="not a range"):
            check_rows(bad, 128, 300)
