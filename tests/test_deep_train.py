"""Training library: Wald-protocol training, checkpoints and resume, device and OOM handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from errors import OptionError, WeightsError
from models.deep.card import read_header
from models.deep.data import prepare_scene, split_scenes
from models.deep.train import (
    checkpoint_paths,
    predict,
    run_with_oom_fallback,
    select_device,
    train,
)
from models.deep.weights import load_state, load_weights
from models.registry import create_model, model_names
from physics.sensors import get_sensor
from tests.floats import EPS32, accumulation_length, assert_rounding_close

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SMALL = {  # small widths: the training tests check the loop, not the published capacity
    "pnn": {"channels": (8, 8), "kernels": (5, 3, 3)},
    "pannet": {"channels": 8, "n_blocks": 1},
    "dicnn": {"channels": 8},
    "fusionnet": {"channels": 8, "n_blocks": 1},
    "lagnet": {"channels": 8, "n_blocks": 1},
    "otpnet": {"channels": 8, "iterations": 2},
    "premix-b": {"channels": 8, "layers": 1},
    "premix-h": {"channels": 8, "bins": 32},
}
FAST = dict(patch=16, batch_size=4, lr=2e-3, bit_depth=12)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pair(seed: int, bands: int = 4, size: int = 48, ratio: int = 2):
    """Image-like MS (smooth fields + edges) and a PAN that is its band mean plus noise."""
    rng = np.random.default_rng(seed)
    hr = ndimage.gaussian_filter(rng.random((bands, size * ratio, size * ratio)), (0, 3, 3))
    hr += (rng.random((1, size * ratio, size * ratio)) > 0.5) * 0.2
    hr = 200 + 3000 * (hr - hr.min()) / np.ptp(hr)
    ms = hr.reshape(bands, size, ratio, size, ratio).mean(axis=(2, 4))
    pan = hr.mean(0) + rng.normal(0, 5, hr.shape[1:])
    return pan.astype(np.uint16), ms.astype(np.uint16)


@pytest.fixture(scope="module")
def pairs():
    return [_pair(i) for i in range(3)]


# -- device, precision, OOM -------------------------------------------------------


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("AUTO").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(OptionError, match="--device 'gpu' is not valid"):
        select_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_unavailable_is_a_clear_option_error(spec):
    with pytest.raises(OptionError, match=f"--device {spec} asked for a GPU.*--device cpu"):
        select_device(spec)


@pytest.mark.parametrize(
    "oom",
    [
        lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
        lambda: RuntimeError("CUDA error: out of memory"),
    ],
)
def test_oom_fallback_halves_batch(oom):
    calls, logs = [], []

    def fn(batch: int) -> str:
        calls.append(batch)
        if batch > 4:
            raise oom()
        return f"ok {batch}"

    result, used = run_with_oom_fallback(fn, 16, log=logs.append)
    assert (result, used) == ("ok 4", 4)
    assert calls == [16, 8, 4]
    assert len(logs) == 2 and "batch 16" in logs[0] and "batch 8" in logs[0]


def test_oom_fallback_limits_and_other_errors():
    def always_oom(batch: int) -> None:
        raise torch.cuda.OutOfMemoryError("out of memory")

    with pytest.raises(OptionError, match="even with batch 2"):
        run_with_oom_fallback(always_oom, 8, min_batch=2)

    def broken(batch: int) -> None:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_with_oom_fallback(broken, 8)


def test_predict_with_oom_fallback_matches_single_pass():
    net = create_model("dicnn", n_bands=3, channels=8).eval()
    rng = np.random.default_rng(0)
    ms, pan = rng.uniform(0, 4095, (6, 3, 16, 16)), rng.uniform(0, 4095, (6, 1, 16, 16))
    first = {"done": False}

    def run(batch: int) -> np.ndarray:
        if not first["done"]:  # injected OOM on the first attempt
            first["done"] = True
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return predict(net, ms, pan, 12, batch_size=batch)

    out, used = run_with_oom_fallback(run, 6)
    assert used == 3
    assert_rounding_close(out, predict(net, ms, pan, 12), accumulation_length(net))


def test_precision_checked():
    with pytest.raises(OptionError, match="--precision"):
        predict(
            create_model("dicnn", n_bands=1),
            np.zeros((1, 1, 8, 8)),
            np.zeros((1, 1, 8, 8)),
            8,
            precision="fp8",
        )


# -- Wald data ----------------------------------------------------------------------


def test_wald_scene_shapes_and_scale(pairs):
    pan, ms = pairs[0]
    s = prepare_scene(pan, ms, get_sensor("landsat8").gains(4), 2, 4095.0, "x")
    assert s.ms_up.shape == s.target.shape == (4, 48, 48) and s.pan.shape == (48, 48)
    assert s.ms_up.dtype == np.float32
    # element-wise scaling, no sum: 1/4095 rounded to float32, the product, the cast
    # (< eps32 relative in all); doubled for the margin
    np.testing.assert_allclose(s.target, ms / 4095.0, rtol=2 * EPS32, atol=0)
    assert abs(s.ms_up.mean() - s.target.mean()) < 0.02  # EXP keeps the radiometry
    assert s.count_valid(16) == 33 * 33


def test_nodata_patches_excluded():
    pan, ms = _pair(0, size=128)
    ms = ms.copy()
    ms[:, :, :40] = 0
    s = prepare_scene(pan, ms, (0.3,) * 4, 2, 4095.0, "x", nodata=0)
    assert 0 < s.count_valid(16) < s.positions(16)
    assert not s.valid(0, 0, 16) and s.valid(0, 128 - 16, 16)


def test_validation_holds_out_whole_scenes():
    scenes = [prepare_scene(*_pair(i, size=24), (0.3,) * 4, 2, 4095.0, f"s{i}") for i in range(5)]
    tr, va = split_scenes(scenes, 0.4, seed=0)
    assert len(va) == 2 and len(tr) == 3
    assert not {s.name for s in tr} & {s.name for s in va}
    assert split_scenes(scenes[:1], 0.4, seed=0)[1] == []


# -- training -------------------------------------------------------------------------


@pytest.mark.parametrize("name", model_names("deep"))
def test_train_30_steps_writes_loadable_weights(tmp_path, pairs, name):
    out = tmp_path / f"{name}.safetensors"
    events: list[dict] = []
    res = train(
        name,
        pairs,
        "landsat8",
        2,
        out,
        steps=30,
        val_fraction=0.34,
        checkpoint_every=15,
        progress=events.append,
        model_kwargs=SMALL[name],
        **FAST,
    )
    assert res.steps == 30 and out.is_file()
    model, card = load_weights(out, name, n_bands=4, ratio=2, sensor="landsat8")
    assert card.steps == 30 and card.bit_depth == 12 and card.scale == 4095.0
    assert card.band_names == ["blue", "green", "red", "nir"]
    assert len(card.training_scenes) == 2 and len(card.training["val_scenes"]) == 1
    assert {"val_l1", "val_l1_exp", "val_psnr_db"} <= set(card.validation)
    assert all({"step", "loss", "val"} <= set(e) for e in events)
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [15, 30]
    assert events[-1]["event"] == "done" and np.isfinite(events[-1]["loss"])
    losses = [e["loss"] for e in events if e["event"] != "done"]
    assert losses[-1] < losses[0]
    for path in checkpoint_paths(out):  # checkpoints are safetensors, never pickles
        read_header(path)


def test_training_beats_interpolation(tmp_path, pairs):
    """On learnable data a residual network improves on EXP within 150 steps."""
    out = tmp_path / "fusionnet.safetensors"
    res = train(
        "fusionnet",
        pairs,
        "landsat8",
        2,
        out,
        steps=150,
        val_fraction=0.34,
        checkpoint_every=1000,
        model_kwargs={"channels": 16, "n_blocks": 1},
        **FAST,
    )
    v = res.card.validation
    assert v["val_l1"] < v["val_l1_exp"], v


def test_resume_continues_exactly(tmp_path, pairs):
    kw = dict(FAST, val_fraction=0.34, checkpoint_every=10, model_kwargs=SMALL["dicnn"])
    straight = train("dicnn", pairs, "landsat8", 2, tmp_path / "a.safetensors", steps=30, **kw)

    class Crash(Exception):
        pass

    def crash_at_20(info: dict) -> None:
        if info["step"] == 20:
            raise Crash

    with pytest.raises(Crash):
        train(
            "dicnn",
            pairs,
            "landsat8",
            2,
            tmp_path / "b.safetensors",
            steps=30,
            progress=crash_at_20,
            **kw,
        )
    ckpt = checkpoint_paths(tmp_path / "b.safetensors")[0]
    assert load_weights(ckpt, "dicnn", 4, 2, "landsat8")[1].steps == 20

    events: list[dict] = []
    resumed = train(
        "dicnn",
        pairs,
        "landsat8",
        2,
        tmp_path / "c.safetensors",
        steps=30,
        resume=ckpt,
        progress=events.append,
        **kw,
    )
    assert [e["step"] for e in events] == [30, 30]  # picks up after step 20
    assert resumed.card.training["resumed_from"] == str(ckpt)
    a, _ = load_state(straight.weights)
    c, _ = load_state(resumed.weights)
    for k in a:
        torch.testing.assert_close(a[k], c[k], rtol=0, atol=0)


def test_resume_checks(tmp_path, pairs):
    kw = dict(FAST, checkpoint_every=5, model_kwargs=SMALL["dicnn"])
    train("dicnn", pairs, "landsat8", 2, tmp_path / "a.safetensors", steps=5, **kw)
    ckpt = checkpoint_paths(tmp_path / "a.safetensors")[0]
    with pytest.raises(WeightsError, match="'dicnn' weights, not 'pnn'"):
        train(
            "pnn", pairs, "landsat8", 2, tmp_path / "b.safetensors", steps=10, resume=ckpt, **FAST
        )
    with pytest.raises(WeightsError, match="same scenes"):
        train(
            "dicnn",
            pairs[:2],
            "landsat8",
            2,
            tmp_path / "b.safetensors",
            steps=10,
            resume=ckpt,
            **FAST,
        )
    with pytest.raises(WeightsError, match="cannot resume"):
        train(
            "dicnn",
            pairs,
            "landsat8",
            2,
            tmp_path / "b.safetensors",
            steps=10,
            resume=tmp_path / "missing.ckpt.safetensors",
            **FAST,
        )


def test_epochs_and_time_limit_stop(tmp_path, pairs):
    kw = dict(FAST, model_kwargs=SMALL["dicnn"], checkpoint_every=1000)
    res = train("dicnn", pairs, "generic", 2, tmp_path / "e.safetensors", epochs=1, **kw)
    # 2 training scenes x 33 x 33 positions / 16^2 / batch 4 -> 3 steps per epoch
    assert res.steps == 3 and res.card.training["epochs"] == 1.0
    res = train("dicnn", pairs, "generic", 2, tmp_path / "t.safetensors", time_limit=0.5, **kw)
    assert res.steps >= 1 and res.card.training["elapsed_s"] < 5


def test_option_errors(tmp_path, pairs):
    out = tmp_path / "x.safetensors"
    with pytest.raises(OptionError, match="--steps, --epochs or --time-limit"):
        train("dicnn", pairs, "landsat8", 2, out)
    with pytest.raises(OptionError, match="--patch 64 does not fit"):
        train("dicnn", pairs, "landsat8", 2, out, steps=1, patch=64)
    with pytest.raises(OptionError, match="not a deep model"):
        train("brovey", pairs, "landsat8", 2, out, steps=1)
    with pytest.raises(OptionError, match="power of two"):
        train("dicnn", pairs, "landsat8", 3, out, steps=1)
    with pytest.raises(OptionError, match="same bands"):
        train("dicnn", [pairs[0], _pair(9, bands=3)], "landsat8", 2, out, steps=1)
    with pytest.raises(OptionError, match="is not 2 x MS"):
        train("dicnn", [(pairs[0][0][:50], pairs[0][1])], "landsat8", 2, out, steps=1)
    floats = [(p.astype(np.float32), m.astype(np.float32)) for p, m in pairs]
    with pytest.raises(OptionError, match="--bit-depth"):
        train("dicnn", floats, "generic", 2, out, steps=1)


@pytest.mark.skipif(not (SHARED / "landsat7_crops").is_dir(), reason="../shared/data absent")
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_train_on_real_landsat7_crops(tmp_path):
    import rasterio

    pairs, names = [], []
    for i in (1, 2):
        folder = SHARED / "landsat7_crops"
        with rasterio.open(folder / f"scene{i:02d}_pan.tif") as ds:
            pan = ds.read(1, window=((0, 192), (0, 192)))
        with rasterio.open(folder / f"scene{i:02d}_ms.tif") as ds:
            ms = ds.read(window=((0, 96), (0, 96)))
        pairs.append((pan, ms))
        names.append(f"scene{i:02d}")
    out = tmp_path / "pnn_landsat7.safetensors"
    res = train(
        "pnn",
        pairs,
        "landsat7",
        2,
        out,
        steps=5,
        patch=32,
        batch_size=2,
        scene_names=names,
        band_names=["red", "green", "blue", "nir", "swir1", "swir2"],
        model_kwargs=SMALL["pnn"],
    )
    card = load_weights(out, "pnn", 6, 2, "landsat7")[1]
    assert card.bit_depth == 8 and card.band_names[0] == "red" and res.steps == 5
    assert set(card.training_scenes) | set(card.training["val_scenes"]) == set(names)
