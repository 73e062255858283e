"""``--adapt`` for the diffusion models: adaptation trains through the whole sampler.

What must hold, for every registered diffusion model (small seeded weights,
tests/diffusion_weights.py): the tailor at the model's split point receives gradients
through every DDIM step and lowers the reference-free loss while the network's own
tensors stay as they were; the same seed gives the same adapted tailor; ``fuse
--adapt`` writes a different image from the unadapted one, tagged, and the saved
adapted weights give that image again through ``--weights`` (up to float rounding);
an 8-band scene runs from scratch (zero-shot) with the full-size network.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from models.deep.adapt import adapt_network, read_patches
from models.deep.adapt_losses import structural_weight
from models.deep.method import network_model
from models.deep.weights import card_for
from models.protocol import RunSettings
from models.registry import get_entry, model_names
from physics.sensors import get_sensor
from raster.scene import open_scene
from raster.scene_facts import SceneOptions, decide
from tests.cli import run_cli
from tests.diffusion_weights import SCALE, small_model, write_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DIFFUSION = model_names("diffusion")
SENSOR = get_sensor("worldview2")
RATIO = 4


def _prepared(name: str, model: torch.nn.Module, steps: int = 2):
    """``model`` as fuse prepares it: the windowed sampler around the network."""
    card = card_for(model, name, sensor="generic", band_names=[f"b{i + 1}" for i in range(4)],
                    ratio=RATIO, bit_depth=16, scale=SCALE)  # fmt: skip
    settings = RunSettings(steps=steps, seed=3)
    device = torch.device("cpu")
    return network_model(get_entry(name).info, model, card, "w.safetensors", device, RATIO,
                         settings)  # fmt: skip


def _adapt(name: str, make_scene, steps: int = 3):
    s = make_scene(pan_shape=(232, 212), ratio=RATIO, seed=11)
    scene = open_scene(s.pan, s.ms)
    ctx = decide(scene, SceneOptions(SENSOR, 16)).context({})
    model = small_model(name).eval()
    method = _prepared(name, model)
    side = method.adapt_side(RATIO)
    assert side == model.window  # trained on the windows the sampler runs on
    patches = read_patches(scene, ctx, SCALE, n=4, patch=side, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = adapt_network(model, patches, "tailor", gains=list(SENSOR.gains(4)), ratio=RATIO,
                           beta=structural_weight(SENSOR.name), steps=steps,
                           forward=method.forward)  # fmt: skip
    return model, method, patches, before, report


@pytest.mark.parametrize("name", DIFFUSION)
def test_tailor_learns_through_the_sampler_and_leaves_the_network(name, make_scene):
    model, method, patches, before, report = _adapt(name, make_scene)
    assert report["steps"] == 3 and report["patches"] == 4
    assert report["loss_end"]["loss"] < report["loss_start"]["loss"]
    now = model.state_dict()
    assert all(torch.equal(now[k], v) for k, v in before.items())  # buffers included
    tailors = dict(model.tailors.named_parameters())
    assert tailors and all(p.grad is None or not p.requires_grad for p in tailors.values())
    moved = [k for k, p in tailors.items() if k.endswith("b.weight") and p.abs().sum() > 0]
    assert moved  # B starts at zero: only a gradient through the sampler moves it
    # the adapted method fuses differently from the network it started as
    origins = [tuple(map(int, o)) for o in patches.origins]
    x, p = torch.from_numpy(patches.ms_up), torch.from_numpy(patches.pan)
    with torch.no_grad():
        adapted = method.forward(x, p, None, origins)
    plain = _prepared(name, small_model(name).eval())
    with torch.no_grad():
        original = plain.forward(x, p, None, origins)
    assert torch.isfinite(adapted).all()
    assert (adapted - original).abs().max() > 1e-6


@pytest.mark.parametrize("name", DIFFUSION)
def test_same_seed_same_adapted_tailor(name, make_scene):
    a = _adapt(name, make_scene, steps=2)[0].tailors.state_dict()
    b = _adapt(name, make_scene, steps=2)[0].tailors.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", DIFFUSION)
def test_fuse_adapt_saves_weights_that_give_the_image_again(name, make_scene, tmp_path, capsys):
    s = make_scene(pan_shape=(232, 212), ratio=RATIO, seed=11)
    weights = write_weights(name, tmp_path / "w.safetensors", sensor="worldview2")
    base = ["fuse", s.pan, *s.ms, "-m", name, "--sensor", "worldview2", "--bit-depth", "16",
            "--steps", "2", "-q"]  # fmt: skip
    plain, adapted, again = tmp_path / "p.tif", tmp_path / "a.tif", tmp_path / "b.tif"
    saved = tmp_path / "adapted.safetensors"
    code, _, err = run_cli([*base, "--weights", str(weights), "-o", str(plain)], capsys)
    assert code == 0, err
    adapt = ["--adapt", "--adapt-steps", "2", "--save-adapted", str(saved), "--json"]
    code, stdout, err = run_cli([*base, "--weights", str(weights), "-o", str(adapted), *adapt],
                                capsys)  # fmt: skip
    assert code == 0, err
    rep = json.loads(stdout)["adaptation"]
    assert (rep["mode"], rep["start"], rep["steps"]) == ("tailor", "given", 2)
    with rasterio.open(adapted) as ds:
        img = ds.read()
        assert ds.tags()["PANSHARP_ADAPT"].startswith("tailor from given")
        assert ds.tags()["PANSHARP_SAMPLER_STEPS"] == "2"
    with rasterio.open(plain) as ds:
        assert not np.array_equal(ds.read(), img)
    code, _, err = run_cli([*base, "--weights", str(saved), "-o", str(again)], capsys)
    assert code == 0, err
    with rasterio.open(again) as ds:
        reloaded = ds.read().astype(np.int64)
    # the same tensors: equal up to float rounding (KSDiff's reloaded network differed
    # by 9e-8 of the [0, 1] range), i.e. one DN where a value lies on a rounding edge
    diff = np.abs(reloaded - img.astype(np.int64))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


@pytest.mark.parametrize("name", DIFFUSION)
def test_eight_band_scene_adapts_from_scratch(name, make_scene, tmp_path, capsys):
    """No diffusion weights have 8 bands: the full-size network is built and trained on
    the scene through its sampler (zero-shot, every weight: mode full)."""
    s = make_scene(pan_shape=(160, 144), ratio=RATIO, bands=8, seed=3)
    out = tmp_path / "z.tif"
    args = ["fuse", s.pan, *s.ms, "-m", name, "--sensor", "worldview2", "-o", str(out),
            "--steps", "1", "--adapt", "--adapt-steps", "1", "--json", "-q"]  # fmt: skip
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    rep = json.loads(stdout)["adaptation"]
    assert (rep["mode"], rep["start"], rep["steps"]) == ("full", "zero-shot", 1)
    with rasterio.open(out) as ds:
        assert ds.count == 8 and ds.tags()["PANSHARP_ADAPT"].startswith("full from zero-shot")
        img = ds.read().astype(np.float64)
    assert np.isfinite(img).all() and img.std(axis=(1, 2)).min() > 0
