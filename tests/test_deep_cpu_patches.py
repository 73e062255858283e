"""CPU inference keeps its activations in glibc's heap: patch cap, allocator setting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.deep.card import WeightsCard
from models.deep.method import DeepModel, cpu_patch_cap
from models.protocol import RunSettings
from models.registry import REGISTRY, create_model
from raster.scene import open_scene
from tests.floats import accumulation_length, assert_rounding_close
from tiling.allocator import GLIBC_MMAP_CEILING
from tiling.executor import execute
from tiling.fuse import FuseOptions, build_context, resolve_sensor
from tiling.patches import plan_patches


@pytest.mark.parametrize(
    ("name", "cap"), [("fusionnet", 496), ("pannet", 496), ("pnn", 352), ("lagnet", None)]
)
def test_cpu_patch_cap_keeps_the_widest_map_under_the_mmap_ceiling(name, cap):
    """The cap is the largest multiple of 16 under the ceiling; LAGNet's 288 tap maps per
    LAGConv would need patches too small for its overlap, so it gets none."""
    model = create_model(name, n_bands=4)
    overlap = 2 * REGISTRY[name].info.halo(2) + 4  # the engine's default for local models
    got = cpu_patch_cap(model, 4, overlap)
    assert got == cap
    if got is not None:
        widest = max(m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        assert widest * got * got * 4 < GLIBC_MMAP_CEILING
        assert widest * (got + 16) ** 2 * 4 > GLIBC_MMAP_CEILING - (64 << 10)  # the largest


@pytest.mark.parametrize("length", [300, 497, 1000, 1999, 4000])
def test_capped_plan_never_stretches_past_the_cap(length):
    plan = plan_patches(length, length + 37, halo=10, max_patch=496)
    assert plan.rows.patch <= 496 and plan.cols.patch <= 496
    free = plan_patches(length, length + 37, halo=10)  # uncapped: may stretch to 1.15 x
    assert free.rows.patch >= plan.rows.patch


def test_run_deep_on_cpu_uses_capped_patches_one_at_a_time(make_scene):
    """DiCNN (64 maps, cap 352) on a 500 x 420 scene: patches at most 352, batch 1, and the
    result equals a run with one patch over the whole scene (exact tiling)."""
    paths = make_scene(pan_shape=(500, 420), ratio=2, bands=3, seed=4)
    scene = open_scene(paths.pan, paths.ms)
    ctx = build_context(scene, resolve_sensor(scene, None), FuseOptions(), 16)
    torch.manual_seed(0)
    net = create_model("dicnn", n_bands=3).eval()
    card = WeightsCard("dicnn", {"n_bands": 3}, "generic", [], 2, 16, 65535.0)
    h, w = scene.out_shape

    def run(settings: RunSettings) -> tuple[np.ndarray, dict]:
        deep = DeepModel("dicnn", net, card, Path("w"), torch.device("cpu"), 3, settings)
        out = np.full((3, h, w), np.nan, dtype=np.float32)

        def sink(spec, fused_dn, valid):
            out[:, spec.row : spec.row + spec.height, spec.col : spec.col + spec.width] = fused_dn

        return out, execute(scene, deep, ctx, sink, settings=settings)

    capped, facts = run(RunSettings())
    assert max(facts["patch"]) <= 352 and facts["batch_size"] == 1 and facts["patches"] > 1
    whole, _ = run(RunSettings(tile=600))
    # Other patch shapes block the convolutions differently: float32 rounding, set by
    # the network's accumulation length and the outputs' magnitude (tests/floats.py).
    assert_rounding_close(capped, whole, accumulation_length(net))
