"""Test-time adaptation (models.deep.adapt): the scene's windows and the three modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.deep.adapt import SWIFT_FRACTION, adapt_network, read_patches
from models.deep.adapt_losses import structural_weight
from models.deep.weights import default_weights_path, load_weights
from physics.sensors import get_sensor
from raster.scene import open_scene
from raster.scene_facts import SceneOptions, decide

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SENSOR = get_sensor("landsat-r4")


def _scene(make_scene, **kw):
    s = make_scene(pan_shape=(320, 288), ratio=4, seed=4, **kw)
    scene = open_scene(s.pan, s.ms, nodata=kw.get("nodata"))
    facts = decide(scene, SceneOptions(SENSOR, 12))
    return scene, facts.context({})


def test_windows_are_valid_on_the_lattice_and_seeded(make_scene):
    scene, ctx = _scene(make_scene, nodata=0, nodata_box=(0, 0, 160, 288))
    got = read_patches(scene, ctx, 4095.0, n=4, patch=64, seed=1)
    assert got.ms_up.shape == (4, 4, 64, 64) and got.ms.shape == (4, 4, 16, 16)
    assert np.isfinite(got.ms_up).all() and got.ms_up.max() < 1.0
    for y, x in got.origins:
        assert y >= 160 and y + 64 <= 320 and x + 64 <= 288  # away from the nodata half
    assert len(set(got.origins)) == 4
    again = read_patches(scene, ctx, 4095.0, n=4, patch=64, seed=1)
    assert again.origins == got.origins and np.array_equal(again.ms, got.ms)
    # the samples are the MS values (the EXP interpolates through them)
    assert np.array_equal(got.ms, got.ms_up[:, :, got.rows][..., got.cols])


def _changed(before: dict, model: torch.nn.Module) -> tuple[int, int]:
    now = model.state_dict()
    moved = sum(int((now[k] != v).sum()) for k, v in before.items())
    return moved, sum(v.numel() for v in before.values())


@pytest.mark.parametrize("mode", ["tailor", "swift", "full"])
def test_each_mode_lowers_the_loss_and_touches_what_it_says(mode, make_scene):
    scene, ctx = _scene(make_scene)
    patches = read_patches(scene, ctx, 4095.0, n=4, patch=64)
    model, _ = load_weights(default_weights_path("fusionnet", "landsat-r4"), "fusionnet", 4, 4,
                            "landsat-r4")  # fmt: skip
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = adapt_network(model, patches, mode, gains=list(SENSOR.gains(4)), ratio=4,
                           beta=structural_weight("landsat-r4"), steps=8)  # fmt: skip
    assert report["steps"] == 8
    assert report["loss_end"]["loss"] < report["loss_start"]["loss"]
    moved, total = _changed(before, model)
    if mode == "tailor":
        assert moved == 0 and "tailors" in dict(model.named_children())
    elif mode == "swift":
        assert 0 < moved <= SWIFT_FRACTION * total + 1
    else:
        assert moved > 0.5 * total
    assert not any(p.requires_grad for p in model.parameters())


def test_default_budget_times_the_patches_the_fuse_runs(make_scene):
    """The budget's estimate runs the network on the fuse's own patch plan (side capped
    under the mmap ceiling on the CPU, one patch per batch) and counts its batches."""
    from models.deep.adapt_prepare import _fusion_seconds
    from models.deep.method import network_model
    from models.protocol import RunSettings
    from models.registry import get_entry
    from tiling.blended import patch_plan

    scene, ctx = _scene(make_scene)
    patches = read_patches(scene, ctx, 4095.0, n=4, patch=64)
    path = default_weights_path("fusionnet", "landsat-r4")
    model, card = load_weights(path, "fusionnet", 4, 4, "landsat-r4")
    settings = RunSettings(tile=96)
    device = torch.device("cpu")
    info = get_entry("fusionnet").info
    net = network_model(info, model, card, path, device, 4, settings)
    plan, batch = patch_plan(scene, net.spec, settings, device)
    assert plan.count > 1
    seen = []
    apply = net.apply

    def counting(work):
        seen.append(tuple(work.ms.shape))
        return apply(work)

    net.apply = counting  # the method's own apply: a diffusion model's whole sampler
    seconds = _fusion_seconds(net, patches, scene, device, settings)
    assert seen == [(batch, 4, *plan.shape)] * 2  # the second pass is the one timed
    assert seconds > 0


@pytest.mark.parametrize("limit", [10.0, 10.5, 3.2])
def test_adapt_time_bounds_the_whole_adaptation(limit, make_scene, monkeypatch):
    """``--adapt-time`` within 10 %: on a clock that every forward pass moves by one
    second (a step costs its forward, the last loss pass another), the adaptation ends
    between 0.9 x and 1.0 x the limit, the final pass included; it used to start a step
    whenever the limit was not yet reached, then pay a step and the final pass past it."""
    import models.deep.adapt as adapt

    clock = [0.0]
    monkeypatch.setattr(adapt.time, "monotonic", lambda: clock[0])
    scene, ctx = _scene(make_scene)
    patches = read_patches(scene, ctx, 4095.0, n=2, patch=64)
    model, _ = load_weights(default_weights_path("fusionnet", "landsat-r4"), "fusionnet", 4, 4,
                            "landsat-r4")  # fmt: skip

    def tick(*_):
        clock[0] += 1.0

    model.register_forward_hook(tick)
    report = adapt_network(model, patches, "tailor", gains=list(SENSOR.gains(4)), ratio=4,
                           beta=structural_weight("landsat-r4"), time_limit=limit)  # fmt: skip
    assert 0.9 * limit <= report["seconds"] <= limit
    assert report["steps"] == int(limit) - 1  # the final pass takes the last second
