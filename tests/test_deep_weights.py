"""Weights files: safetensors round trip with the card, scene checks, refusal of pickles."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import models.deep.card as card_mod
from errors import WeightsError
from models.deep.card import WeightsCard, find_default_weights, list_default_weights, read_card
from models.deep.weights import load_weights, resolve_weights, save_weights
from models.registry import available_weights, create_model, get_entry, model_names

DEEP = model_names("deep")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _no_torch_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.load must never be reached on a user file."""

    def boom(*args, **kwargs):
        raise AssertionError("torch.load called on a weights file")

    monkeypatch.setattr(torch, "load", boom)


def _card(model, name: str, **over) -> WeightsCard:
    fields = dict(
        model=name,
        kwargs=dict(model.config),
        sensor="landsat8",
        band_names=["blue", "green", "red", "nir"][: model.n_bands],
        ratio=2,
        bit_depth=16,
        scale=65535.0,
        training_scenes=["a", "b"],
        steps=123,
        training={"patch": 64},
        validation={"val_l1": 0.01},
    )
    fields.update(over)
    return WeightsCard(**fields)


def _saved(tmp_path: Path, name: str = "dicnn", n_bands: int = 4, **over) -> Path:
    model = create_model(name, n_bands=n_bands)
    path = tmp_path / f"{name}.safetensors"
    save_weights(path, model, _card(model, name, **over))
    return path


@pytest.mark.parametrize("name", DEEP)
def test_round_trip_with_card(tmp_path, name):
    torch.manual_seed(0)
    physics = {"ratio": 2} if get_entry(name).info.extra.get("physics") else {}
    model = create_model(name, n_bands=4, **physics)
    card = _card(model, name)
    path = tmp_path / "w.safetensors"
    save_weights(path, model, card)

    assert read_card(path) == card
    loaded, card2 = load_weights(path, name, n_bands=4, ratio=2, sensor="landsat8")
    assert card2 == card and not loaded.training
    for (k, a), (k2, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b)
    x, p = torch.rand(1, 4, 20, 20), torch.rand(1, 1, 20, 20)
    with torch.inference_mode():
        # the same weights, inputs and thread count: the same roundings, bit for bit
        torch.testing.assert_close(model.eval()(x, p), loaded(x, p), rtol=0, atol=0)


def test_card_is_json_strings_in_header(tmp_path):
    path = _saved(tmp_path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    for key in (
        "model",
        "kwargs",
        "sensor",
        "band_names",
        "ratio",
        "bit_depth",
        "scale",
        "training_scenes",
        "steps",
        "validation",
        "pansharp_version",
    ):
        assert key in meta and isinstance(meta[key], str)
        json.loads(meta[key])
    assert json.loads(meta["kwargs"])["n_bands"] == 4
    assert json.loads(meta["model"]) == "dicnn"


def test_non_default_sizes_round_trip(tmp_path):
    model = create_model("pnn", n_bands=3, channels=(8, 4), kernels=(5, 3, 3))
    path = tmp_path / "small.safetensors"
    save_weights(path, model, _card(model, "pnn"))
    loaded, card = load_weights(path, "pnn", 3, 2, "landsat8")
    assert loaded.config == model.config and loaded.halo == 4


@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        (dict(n_bands=6, ratio=2, sensor="landsat8"), ["4 bands", "has 6", "blue, green"]),
        (dict(n_bands=4, ratio=4, sensor="landsat8"), ["ratio 2", "ratio 4", "--weights"]),
        (dict(n_bands=4, ratio=2, sensor="landsat7"), ["'landsat8'", "--sensor landsat8"]),
    ],
)
def test_mismatch_names_problem_and_fix(tmp_path, kwargs, needles):
    path = _saved(tmp_path)
    with pytest.raises(WeightsError) as err:
        load_weights(path, "dicnn", **kwargs)
    msg = str(err.value)
    assert str(path) in msg
    for needle in needles:
        assert needle in msg, msg


def test_wrong_model_and_several_mismatches_in_one_message(tmp_path):
    path = _saved(tmp_path)
    with pytest.raises(WeightsError) as err:
        load_weights(path, "pnn", n_bands=3, ratio=4, sensor="worldview2")
    msg = str(err.value)
    assert "-m dicnn" in msg and "3" in msg and "ratio 4" in msg and "worldview2" in msg


def test_sensor_alias_and_skip(tmp_path):
    path = _saved(tmp_path)
    load_weights(path, "dicnn", 4, 2, "landsat9")  # alias of landsat8
    load_weights(path, "dicnn", 4, 2, None)  # sensor check skipped


def test_torch_save_zip_refused(tmp_path):
    model = create_model("dicnn", n_bands=4)
    for suffix in (".pt", ".pth", ".safetensors"):
        path = tmp_path / f"model{suffix}"
        torch.save(model.state_dict(), path)
        with pytest.raises(WeightsError, match="zip archive.*never unpickles"):
            load_weights(path, "dicnn", 4, 2, "landsat8")


def test_pickle_refused(tmp_path):
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    plain = tmp_path / "plain.safetensors"
    with plain.open("wb") as f:
        pickle.dump({"w": [1.0, 2.0]}, f)
    for path in (legacy, plain):
        with pytest.raises(WeightsError, match="pickle"):
            read_card(path)
        with pytest.raises(WeightsError, match="pickle"):
            load_weights(path, "dicnn", 4, 2, "landsat8")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "too short"),
        (b"hello world, not weights", "bad header length"),
        ((24).to_bytes(8, "little") + b"[1, 2, 3, 4, 5, 6, 7, 8]", "bad header length"),
        ((3).to_bytes(8, "little") + b"{1}", "not a valid safetensors"),
        ((12).to_bytes(8, "little") + b"\xff" * 12, "not a valid safetensors"),
    ],
)
def test_garbage_refused(tmp_path, content, needle):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=needle):
        load_weights(path, "dicnn", 4, 2, "landsat8")


def test_header_length_starting_like_a_pickle_is_accepted(tmp_path):
    """A safetensors header of 0x580 bytes starts with 80 05, the pickle-5 marker."""
    model = create_model("dicnn", n_bands=4)
    path = tmp_path / "w.safetensors"
    save_weights(path, model, _card(model, "dicnn", training={"pad": ""}))
    base = int.from_bytes(path.read_bytes()[:8], "little")
    for pad in range(0x580 - base - 8, 0x580 - base + 8):
        card = _card(model, "dicnn", training={"pad": "x" * pad})
        save_weights(path, model, card)
        if path.read_bytes()[:2] == b"\x80\x05":
            break
    else:
        pytest.fail("could not build the header length")
    assert read_card(path) == card
    load_weights(path, "dicnn", 4, 2, "landsat8")


def test_missing_file_and_foreign_safetensors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist.*--weights"):
        load_weights(tmp_path / "nope.safetensors", "dicnn", 4, 2, "landsat8")
    foreign = tmp_path / "foreign.safetensors"
    save_file(dict(create_model("dicnn", n_bands=4).state_dict()), foreign)
    with pytest.raises(WeightsError, match="not written by pansharp"):
        load_weights(foreign, "dicnn", 4, 2, "landsat8")


def test_tensors_not_matching_card(tmp_path):
    small = create_model("dicnn", n_bands=4, channels=8)
    path = tmp_path / "lying.safetensors"
    card = _card(small, "dicnn", kwargs={"n_bands": 4, "channels": 64, "n_layers": 3})
    save_file(dict(small.state_dict()), path, metadata=card.to_metadata())
    with pytest.raises(WeightsError, match="do not match the dicnn architecture"):
        load_weights(path, "dicnn", 4, 2, "landsat8")


def test_default_weights_lookup(tmp_path, monkeypatch):
    monkeypatch.setattr(card_mod, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(WeightsError) as err:
        find_default_weights("pnn", "landsat7")
    msg = str(err.value)
    assert "pnn_landsat7.safetensors" in msg and "--weights FILE" in msg
    assert "pansharp train -m pnn --sensor landsat7" in msg
    with pytest.raises(WeightsError, match="no default weights"):
        resolve_weights(None, "pnn", "landsat-7")

    model = create_model("pnn", n_bands=6)
    names = ["blue", "green", "red", "nir", "swir1", "swir2"]
    card = _card(model, "pnn", sensor="landsat7", band_names=names, bit_depth=8, scale=255.0)
    save_weights(tmp_path / "pnn_landsat7.safetensors", model, card)
    for leftover in ("pnn_landsat8.stage1", "pnn_landsat8.ckpt", "pnn_landsat8.ckpt.optim"):
        save_weights(tmp_path / f"{leftover}.safetensors", model, card)  # a training run's
    assert resolve_weights(None, "pnn", "landsat-7") == tmp_path / "pnn_landsat7.safetensors"
    assert resolve_weights("x.safetensors", "pnn", "landsat7") == Path("x.safetensors")
    listed = list_default_weights()
    assert [(d["model"], d["sensor"], d["bands"], d["ratio"]) for d in listed] == [
        ("pnn", "landsat7", 6, 2)
    ]
    assert available_weights("pnn")[0]["sensor"] == "landsat7"
    assert available_weights("dicnn") == []
    (tmp_path / "dicnn_landsat8.safetensors").write_bytes(b"broken")
    (broken,) = available_weights("dicnn")
    assert broken["sensor"] == "landsat8" and "safetensors file" in broken["error"]


def test_save_refuses_card_for_other_config(tmp_path):
    model = create_model("dicnn", n_bands=4)
    with pytest.raises(ValueError, match="differ"):
        save_weights(
            tmp_path / "x.safetensors", model, _card(model, "dicnn", kwargs={"n_bands": 5})
        )


def test_network_built_for_another_ratio_than_its_card_is_refused(tmp_path):
    """OTPNet's operators are built for one ratio (its kwargs); a card claiming another
    would decimate on the wrong lattice with exit code 0."""
    from models.deep.weights import check_card

    model = create_model("otpnet", n_bands=4, ratio=4)
    check_card(_card(model, "otpnet", ratio=4), "w.safetensors", "otpnet", 4, 4, None)
    with pytest.raises(WeightsError, match="built for ratio 4 but the card says 2"):
        check_card(_card(model, "otpnet", ratio=2), "w.safetensors", "otpnet", 4, 2, None)
