"""Random-window sampler: streamed patches equal whole-scene ones, seeded splits, resume."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from scipy import ndimage

from models.deep.data import PAN_REACH, nodata_reach, prepare_scene
from models.deep.readers import ArrayPair, FilePair, open_file_pairs
from models.deep.sampler import StreamingScene, WindowSampler, split_windows
from models.deep.train import checkpoint_paths, train
from models.deep.validation import choose_crops, write_crop
from models.deep.weights import load_state
from models.registry import create_model
from physics.sensors import get_sensor
from raster.pairs import PairSpec, read_pair
from tests.floats import EPS32, accumulation_length, assert_rounding_close
from tiling.windows import box_positions, grid_windows, hold_out_rows, random_windows

GAINS = (0.29, 0.30, 0.28, 0.23)
SCALE = 4095.0
# Streamed and whole-scene patches sum the same non-zero filter taps in float64, over
# blocks of other sizes (FFT lengths, BLAS blocking): they differ by ~1e-16 relative,
# which the float32 cast turns into at most one float32 unit (<= EPS32 x |value|); two
# units leave room for the float64 difference itself.
STREAM_TERMS = 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pair(seed: int, size: int, ratio: int, bands: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Image-like MS (smooth fields + edges) and a PAN that is its band mean plus noise."""
    rng = np.random.default_rng(seed)
    n = size * ratio
    hr = ndimage.gaussian_filter(rng.random((bands, n, n)), (0, 3, 3))
    hr += (rng.random((1, n, n)) > 0.5) * 0.2
    hr = 200 + 3000 * (hr - hr.min()) / np.ptp(hr)
    ms = hr.reshape(bands, size, ratio, size, ratio).mean(axis=(2, 4))
    pan = hr.mean(0) + rng.normal(0, 5, hr.shape[1:])
    return pan.astype(np.uint16), ms.astype(np.uint16)


def _border_windows(h: int, w: int, p: int) -> list[tuple[int, int]]:
    """Every corner and edge middle, points one pixel in from the border, the centre."""
    ys, xs = (0, 1, (h - p) // 2, h - p - 1, h - p), (0, 1, (w - p) // 2, w - p - 1, w - p)
    return [(y, x) for y in ys for x in xs]


def _assert_same(got, ref) -> None:
    assert got is not None and ref is not None
    for g, r in zip(got, ref, strict=True):
        assert g.shape == r.shape and g.dtype == np.float32
        assert_rounding_close(g, r, STREAM_TERMS)


# -- streaming == in memory ------------------------------------------------------------------


@pytest.mark.parametrize(("ratio", "size", "patch"), [(2, 120, 16), (4, 200, 32)])
def test_streamed_patches_equal_whole_scene(ratio, size, patch):
    pan, ms = _pair(0, size, ratio)
    whole = prepare_scene(pan, ms, GAINS, ratio, SCALE, "x")
    stream = StreamingScene(ArrayPair(pan, ms, "x"), GAINS, ratio, SCALE)
    assert stream.shape == whole.shape == (size, size)
    h, w = whole.shape
    # the read block is smaller than the scene, so the halo (not the whole scene) is used
    r0, r1, c0, c1 = stream.read_box(h // 2, w // 2, patch)
    assert r1 - r0 < h and c1 - c0 < w and r0 % ratio == 0 and c0 % ratio == 0
    rng = np.random.default_rng(1)
    random = [tuple(v) for v in rng.integers(0, h - patch + 1, (6, 2)).tolist()]
    for y, x in _border_windows(h, w, patch) + random:
        _assert_same(stream.patch(y, x, patch), whole.patch(y, x, patch))


def test_streamed_patches_odd_sizes_and_crop():
    """A PAN one pixel short of ratio x MS and an MS not a multiple of the ratio: the
    streamed grid is cropped exactly as the whole scene is."""
    pan, ms = _pair(3, 90, 4)
    pan, ms = pan[:-1, :-3], ms[:, :-1, :]  # MS 89 x 90, PAN 359 x 357
    whole = prepare_scene(pan, ms, GAINS, 4, SCALE, "x")
    stream = StreamingScene(ArrayPair(pan, ms, "x"), GAINS, 4, SCALE)
    assert stream.shape == whole.shape == (88, 88)
    for y, x in _border_windows(88, 88, 16):
        _assert_same(stream.patch(y, x, 16), whole.patch(y, x, 16))


def test_file_pair_with_nodata_equals_whole_scene(make_scene):
    """Windowed reads of the files == whole-file reads (raster.pairs), nodata included:
    the same windows are refused and the others are equal."""
    s = make_scene(pan_shape=(480, 400), ratio=2, nodata=0, nodata_box=(200, 40, 280, 120))
    spec = PairSpec(s.pan, s.ms[0], "s")
    pan, ms, scene = read_pair(spec, None, None)
    whole = prepare_scene(pan, ms, GAINS, 2, SCALE, "s")
    pair = FilePair(spec, scene)
    stream = StreamingScene(pair, GAINS, 2, SCALE)
    assert stream.shape == whole.shape == (240, 200)
    p = 16
    grid = grid_windows([(0, 240, 0, 200)], 24)
    windows = [(y, x) for _, y, x in grid.tolist()] + _border_windows(240, 200, p)
    refused = 0
    for y, x in windows:
        ref, got = whole.patch(y, x, p), stream.patch(y, x, p)
        assert (ref is None) == (got is None), (y, x)
        if ref is None:
            refused += 1
        else:
            _assert_same(got, ref)
    assert 0 < refused < len(windows)
    pair.close()


@pytest.mark.parametrize("where", ["ms", "pan"])
def test_nodata_reach_refuses_exactly_the_grown_mask(where):
    """One invalid pixel at degraded pixel (70, 70): a window is refused when it lies
    within nodata_reach (an MS pixel: MTF + EXP) or PAN_REACH (a PAN pixel: imresize)
    of it, in the stream and in the whole scene alike."""
    ratio, p = 2, 16
    pan, ms = _pair(5, 140, ratio)
    pan, ms = pan.astype(np.float32), ms.astype(np.float32)
    if where == "ms":
        ms[1, 70, 70] = np.nan
        g = nodata_reach(ratio)
    else:
        pan[70 * ratio + 1, 70 * ratio] = np.nan
        g = PAN_REACH
    stream = StreamingScene(ArrayPair(pan, ms, "x"), GAINS, ratio, SCALE)
    whole = prepare_scene(pan, ms, GAINS, ratio, SCALE, "x")
    x = 62  # columns cover 70: only the row distance decides
    for y in (70 - p - g, 70 - p - g + 1, 70 + g, 70 + g + 1):
        touches = y + p + g > 70 and y - g <= 70
        assert (stream.patch(y, x, p) is None) == touches, y
        assert whole.valid(y, x, p) != touches, y


# -- windows ---------------------------------------------------------------------------------


def test_random_windows_seeded_inside_and_uniform():
    boxes = [(0, 20, 0, 12), (30, 34, 5, 40), (0, 3, 0, 3)]  # the last holds no 4 x 4 window
    a = random_windows(np.random.default_rng(7), boxes, 4, 4000)
    b = random_windows(np.random.default_rng(7), boxes, 4, 4000)
    c = random_windows(np.random.default_rng(8), boxes, 4, 4000)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    for i, y, x in a.tolist():
        r0, r1, c0, c1 = boxes[i]
        assert r0 <= y and y + 4 <= r1 and c0 <= x and x + 4 <= c1
    counts = [int(np.prod(box_positions(bx, 4))) for bx in boxes]
    assert counts == [17 * 9, 1 * 32, 0]
    # each box gets its share of the positions (binomial: 5 sigma), every position is hit
    for i, n in enumerate(counts):
        share = n / sum(counts)
        sigma = np.sqrt(4000 * share * (1 - share))
        assert abs((a[:, 0] == i).sum() - 4000 * share) <= 5 * sigma
    assert len({(y, x) for i, y, x in a.tolist() if i == 1}) == 32
    with pytest.raises(ValueError, match="no 64 x 64 window"):
        random_windows(np.random.default_rng(0), boxes, 64, 1)


def test_hold_out_rows_keeps_the_gap():
    train_boxes, band = hold_out_rows((200, 50), 0.1, 16, 30, bottom=True)
    assert band == (180, 200, 0, 50) and train_boxes == [(0, 150, 0, 50)]
    train_boxes, band = hold_out_rows((200, 50), 0.1, 16, 30, bottom=False)
    assert band == (0, 20, 0, 50) and train_boxes == [(50, 200, 0, 50)]
    assert hold_out_rows((60, 50), 0.1, 16, 30, bottom=True) is None  # no room left


def test_split_single_scene_deterministic_and_disjoint():
    ratio, p = 2, 16
    pan, ms = _pair(0, 200, ratio)
    src = [StreamingScene(ArrayPair(pan, ms, "one"), GAINS, ratio, SCALE)]
    sides = set()
    for seed in range(8):
        a = split_windows(src, 0.2, seed, p, ratio)
        b = split_windows(src, 0.2, seed, p, ratio)
        assert a == b
        ((_, (v0, v1, _, _)),) = a.val
        sides.add(v0 == 0)
        assert a.val_rows == {"scene": "one", "rows": [v0, v1]} and a.val_names == []
        # no training read (window + its halo, before clipping) reaches a validation row
        sampler = WindowSampler(src, a.train, p, np.random.default_rng(seed))
        for _, y, x in sampler.windows(300).tolist():
            r0, r1, _, _ = src[0].read_box(y, x, p)
            assert r1 <= v0 or r0 >= v1
    assert sides == {True, False}  # the seed picks the side


def test_split_whole_scenes_and_epoch_area():
    scenes = [prepare_scene(*_pair(i, 24, 2), GAINS, 2, SCALE, f"s{i}") for i in range(5)]
    a = split_windows(scenes, 0.4, 3, 16, 2)
    assert a == split_windows(scenes, 0.4, 3, 16, 2)
    assert len(a.val_names) == 2 and not set(a.train_names) & set(a.val_names)
    assert {i for i, _ in a.train} | {i for i, _ in a.val} == set(range(5))
    assert all(box == (0, 24, 0, 24) for _, box in a.train + a.val)


def test_sampler_state_continues_the_sequence():
    scene = prepare_scene(*_pair(1, 64, 2), GAINS, 2, SCALE, "x")
    areas = [(0, (0, 64, 0, 64))]
    rng = np.random.default_rng(11)
    straight = WindowSampler([scene], areas, 16, rng)
    first = straight.batch(4)
    state = rng.bit_generator.state
    second = straight.batch(4)
    rng2 = np.random.default_rng(0)
    rng2.bit_generator.state = state
    again = WindowSampler([scene], areas, 16, rng2).batch(4)
    for u, v in zip(second, again, strict=True):
        assert np.array_equal(u, v)
    assert not np.array_equal(first[0], second[0])


def test_sampler_skips_nodata_and_validation_is_deterministic(tmp_path):
    pan, ms = _pair(2, 128, 2)
    ms = ms.astype(np.float32)
    ms[:, :, :48] = np.nan  # the left 48 columns (and their reach) hold no valid window
    scene = StreamingScene(ArrayPair(pan, ms, "x"), GAINS, 2, SCALE)
    areas = [(0, (0, 128, 0, 128))]
    sampler = WindowSampler([scene], areas, 16, np.random.default_rng(0))
    ms_up, pan_b, tgt = sampler.batch(6)
    assert ms_up.shape == (6, 4, 16, 16) and pan_b.shape == (6, 1, 16, 16)
    assert np.isfinite(ms_up).all() and np.isfinite(tgt).all()
    # validation: a crop of the held-out area, written the same twice, nodata left out
    (crop,) = choose_crops(areas, ["x"], 2, side=64)
    v1 = write_crop(scene.reader, scene.shape, crop, GAINS, 2, tmp_path, 0)
    v2 = write_crop(scene.reader, scene.shape, crop, GAINS, 2, tmp_path, 1)
    cubes = []
    for u, v in zip((v1.pan, v1.ms, v1.ref), (v2.pan, v2.ms, v2.ref), strict=True):
        with rasterio.open(u) as a, rasterio.open(v) as b:
            cubes.append(a.read())
            assert np.array_equal(cubes[-1], b.read(), equal_nan=True)
    valid = np.isfinite(cubes[2]).all(axis=0)
    assert 0 < valid.sum() < valid.size and np.isfinite(cubes[0]).all()
    assert scene.patch(0, 0, 16) is None  # so some draws were refused and replaced
    assert choose_crops([], ["x"], 2) == []


# -- training through the streaming sampler ---------------------------------------------------

SMALL = {"channels": 8}
FAST = dict(patch=16, batch_size=4, lr=2e-3, bit_depth=12, model_kwargs=SMALL)


@pytest.fixture
def file_pairs(make_scene):
    scenes = [make_scene(pan_shape=(192, 192), ratio=2, seed=i, name=f"s{i}") for i in range(3)]
    specs = [PairSpec(s.pan, s.ms[0], f"s{i}") for i, s in enumerate(scenes)]
    files = open_file_pairs(specs, get_sensor("landsat8"))
    yield files
    for p in files.pairs:
        p.close()


def test_streaming_training_learns_and_resumes_exactly(tmp_path, file_pairs):
    kw = dict(FAST, val_fraction=0.34, checkpoint_every=10)
    events: list[dict] = []
    pairs, r = file_pairs.pairs, file_pairs.ratio
    straight = train(
        "dicnn", pairs, "landsat8", r, tmp_path / "a.safetensors", steps=30,
        progress=events.append, **kw,
    )  # fmt: skip
    assert straight.card.training["sampler"] == "random windows, read per window"
    assert len(straight.card.training["val_scenes"]) == 1
    losses = [e["loss"] for e in events if e["event"] != "done"]
    assert losses[-1] < losses[0]

    class Crash(Exception):
        pass

    def crash_at_20(info: dict) -> None:
        if info["step"] == 20:
            raise Crash

    with pytest.raises(Crash):
        train(
            "dicnn", pairs, "landsat8", r, tmp_path / "b.safetensors", steps=30,
            progress=crash_at_20, **kw,
        )  # fmt: skip
    ckpt = checkpoint_paths(tmp_path / "b.safetensors")[0]
    resumed = train(
        "dicnn", pairs, "landsat8", r, tmp_path / "c.safetensors", steps=30, resume=ckpt, **kw
    )
    a, _ = load_state(straight.weights)
    c, _ = load_state(resumed.weights)
    for k in a:
        torch.testing.assert_close(a[k], c[k], rtol=0, atol=0)


def test_streamed_and_in_memory_training_agree(tmp_path, make_scene):
    """The same windows from files and from arrays: the first steps' losses agree to
    rounding (patches equal to a float32 unit, the same seeded network and draws)."""
    s = make_scene(pan_shape=(256, 256), ratio=2, seed=4)
    spec = PairSpec(s.pan, s.ms[0], "s")
    pan, ms, _ = read_pair(spec, None, None)
    files = open_file_pairs([spec], get_sensor("landsat8"))
    kw = dict(FAST, val_fraction=0.2, checkpoint_every=100, progress_every=1, scene_names=["s"])
    runs = []
    for pairs in ([(pan, ms)], files.pairs):
        events: list[dict] = []
        res = train(
            "dicnn", pairs, "landsat8", 2, tmp_path / f"{len(runs)}.safetensors", steps=3,
            progress=events.append, **kw,
        )  # fmt: skip
        runs.append(([e["loss"] for e in events if e["event"] == "step"], res.card))
    files.pairs[0].close()
    (mem, card_mem), (st, card_st) = runs
    assert card_mem.training["val_rows"] == card_st.training["val_rows"] is not None
    assert len(mem) == len(st) == 3
    # step 1's loss comes before any update: the same network on patches equal to two
    # float32 units (values <= 1), carried through the network's sums (accumulation
    # length, tests.floats) and the L1 mean
    terms = accumulation_length(create_model("dicnn", n_bands=4, **SMALL)) + STREAM_TERMS
    assert abs(st[0] - mem[0]) <= terms * EPS32
