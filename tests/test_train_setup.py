"""What a training run sets up before its first step: aligned windows for ratio-aligned
networks, physics constructor arguments, warm starts (--init), equalisation statistics."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from errors import OptionError
from models.deep.method import value_histograms
from models.deep.sampler import WindowSampler, open_sources
from models.deep.train import train
from models.deep.train_setup import (
    HISTOGRAM_WINDOWS,
    initial_model,
    physics_kwargs,
    training_histograms,
)
from models.deep.weights import load_state
from physics.degrade import degrade_ms
from physics.sensors import get_sensor
from tests.test_deep_train import FAST, _pair

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pairs():
    return [_pair(i) for i in range(3)]


def _sources(pairs, ratio=2):
    return open_sources(pairs, get_sensor("landsat8").gains, ratio, 4095.0)


@pytest.mark.parametrize("lattice,phase", [(2, 1), (4, 2)])
def test_aligned_windows_start_on_the_sample_lattice(pairs, lattice, phase):
    sources = _sources(pairs)
    boxes = [(0, (3, 45, 1, 47)), (1, (0, 48, 0, 48))]
    sampler = WindowSampler(sources, boxes, 16, np.random.default_rng(0))
    free = sampler.windows(400)
    assert ((free[:, 1:] - phase) % lattice != 0).any()  # unaligned draws exist...
    sampler.align = (lattice, phase)
    got = sampler.windows(400)
    assert ((got[:, 1:] - phase) % lattice == 0).all()  # ...and are moved onto it
    for s, y, x in got.tolist():
        (r0, r1, c0, c1) = dict(boxes)[s]
        assert r0 <= y and y + 16 <= r1 and c0 <= x and x + 16 <= c1


def test_aligned_windows_hold_the_ms_samples_on_their_lattice(pairs):
    """With phase r/2 the degraded MS_LR samples (toolbox decimation: MTF-filtered MS at
    r k + r/2) sit on patch pixels (r i, r j), where ms_up (the 23-tap EXP, which
    interpolates through its samples) equals them: what OTPNet reads as ``lr``."""
    r = 2
    pan, ms = pairs[0]
    src = _sources(pairs)[0]
    gains = get_sensor("landsat8").gains(4)
    lr_full = degrade_ms(ms.astype(np.float64) / 4095.0, list(gains), r)
    for y, x in [(1, 1), (5, 9), (21, 13)]:  # (y - r/2) % r == 0
        ms_up, _, _ = src.patch(y, x, 16)
        got = ms_up[:, ::r, ::r]
        want = lr_full[:, (y - 1) // r : (y - 1) // r + 8, (x - 1) // r : (x - 1) // r + 8]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)  # float32 of values <= 1
    off, _, _ = src.patch(2, 2, 16)  # off the lattice the same slice is not the samples
    want = lr_full[:, 1:9, 1:9]
    assert np.abs(off[:, ::r, ::r] - want).max() > 1e-4


def test_physics_kwargs_only_for_physics_networks():
    sensor = get_sensor("landsat8")
    plain = SimpleNamespace(info=SimpleNamespace(extra={}))
    phys = SimpleNamespace(info=SimpleNamespace(extra={"physics": True}))
    assert physics_kwargs(plain, sensor, 2, 4) == {}
    got = physics_kwargs(phys, sensor, 4, 4)
    assert got == {
        "ratio": 4,
        "gains": [0.3] * 4,
        "band_weights": [0.0, 0.5, 0.5, 0.0],
    }


def test_init_warm_starts_from_weights_and_checks_the_model(tmp_path, pairs):
    small = {"channels": 8, "n_blocks": 1}
    first = tmp_path / "a.safetensors"
    train("fusionnet", pairs, "landsat8", 2, first, steps=3, val_fraction=0.0,
          model_kwargs=small, **FAST)  # fmt: skip
    tensors, _ = load_state(first)
    warm = initial_model("fusionnet", 4, {}, first)
    for k, v in warm.state_dict().items():
        assert torch.equal(v, tensors[k]), k
    cold = initial_model("fusionnet", 4, dict(small), None)
    assert not all(torch.equal(v, tensors[k]) for k, v in cold.state_dict().items())
    with pytest.raises(OptionError, match=r"--init .* holds 'fusionnet' weights, not 'dicnn'"):
        initial_model("dicnn", 4, {}, first)
    res = train("fusionnet", pairs, "landsat8", 2, tmp_path / "b.safetensors", steps=2,
                val_fraction=0.0, init=first, **FAST)  # fmt: skip
    assert res.card.training["init_from"] == "a.safetensors"
    assert res.card.kwargs["channels"] == 8  # the architecture came from --init


def test_value_histograms_clip_and_mask():
    ms = np.array([[[-0.5, 0.0, 0.49], [0.5, 0.99, 2.0]]])  # (1, 2, 3)
    pan = np.array([[0.1, 0.2, np.nan], [0.6, 0.7, 0.8]])
    valid = np.array([[True, True, True], [True, True, False]])
    ms_h, pan_h = value_histograms(ms, pan, valid, 2)
    assert ms_h.tolist() == [[3, 2]]  # -0.5 -> bin 0, 2.0 excluded by the mask
    assert pan_h.tolist() == [2, 2]  # NaN skipped, 0.8 masked


def test_training_histograms_are_per_scene_and_count_every_window_pixel(pairs):
    sources = _sources(pairs)
    model = SimpleNamespace(equalisation_bins=32)
    boxes = [(0, (0, 48, 0, 48)), (2, (0, 48, 0, 24)), (2, (0, 24, 24, 48))]
    ms_h, pan_h = training_histograms(sources, boxes, 16, 0, model)
    assert ms_h.shape == (3, 4, 32) and pan_h.shape == (3, 32)
    assert (ms_h[[0, 2]].sum(2) == HISTOGRAM_WINDOWS * 16 * 16).all()
    assert (pan_h[[0, 2]].sum(1) == HISTOGRAM_WINDOWS * 16 * 16).all()
    assert ms_h[1].sum() == 0 and pan_h[1].sum() == 0  # no training area in scene 1
    # scene 0's statistics are its own windows' (drawn from scene 0 alone)
    alone = training_histograms(sources, boxes[:1], 16, 0, model)
    assert np.array_equal(alone[0][0], ms_h[0]) and np.array_equal(alone[1][0], pan_h[0])
    assert not np.array_equal(ms_h[0], ms_h[2])
    again = training_histograms(sources, boxes, 16, 0, model)
    assert np.array_equal(again[0], ms_h)  # seeded: the same statistics every run


def test_sampler_reports_the_scene_of_every_patch(pairs):
    sources = _sources(pairs)
    boxes = [(0, (0, 48, 0, 48)), (2, (0, 48, 0, 48))]
    sampler = WindowSampler(sources, boxes, 16, np.random.default_rng(4))
    ms_up, _, _ = sampler.batch(12)
    twin = WindowSampler(sources, boxes, 16, np.random.default_rng(4))
    wins = twin.windows(12)  # no nodata: the batch is exactly these windows
    assert sampler.drawn.tolist() == wins[:, 0].tolist()
    assert set(sampler.drawn.tolist()) == {0, 2}
    for k, (s, y, x) in enumerate(wins.tolist()):
        assert np.array_equal(ms_up[k], sources[s].patch(y, x, 16)[0])
