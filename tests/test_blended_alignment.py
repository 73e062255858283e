"""Ratio-aligned patches and the low-resolution MS for blended methods (tiling.patches,
tiling.blended): what a method with a decimation operator in its data term relies on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from models.protocol import BLENDED, MethodSpec, PatchBatch, RunSettings
from raster.scene import open_scene
from tiling.blended import sample_phase
from tiling.executor import execute
from tiling.fuse import FuseOptions, build_context, resolve_sensor
from tiling.patches import plan_patches


@pytest.mark.parametrize(("ratio", "phase"), [(4, (1, 3)), (2, (0, 1)), (4, (0, 0))])
def test_aligned_plan_keeps_cores_and_weights_and_starts_on_the_lattice(ratio, phase):
    base = plan_patches(301, 277, halo=5, tile=64)
    al = plan_patches(301, 277, halo=5, tile=64, align=ratio, phase=phase)
    for a, b, ph in ((base.rows, al.rows, phase[0]), (base.cols, al.cols, phase[1])):
        assert b.patch % ratio == 0 and b.patch >= a.patch
        assert len(a.starts) == len(b.starts)
        for i in range(len(a.starts)):
            assert (b.starts[i] - ph) % ratio == 0
            assert b.core_start(i) == a.core_start(i) and b.core == a.core
            assert b.margin <= b.lead(i) < b.margin + ratio
            assert b.lead(i) + b.core + b.margin <= b.patch  # the trailing margin is kept
            wa, wb = a.weights(i), b.weights(i)
            la = wa[a.lead(i) : a.lead(i) + a.core]
            lb = wb[b.lead(i) : b.lead(i) + b.core]
            assert np.array_equal(la, lb) and wb.sum() == wa.sum()
    assert al.exact == base.exact


@dataclass
class Upsampled:
    """A blended method whose output is its low-resolution MS repeated onto the PAN
    grid (nearest): right only if every patch decimates on the scene's lattice."""

    ratio: int
    ratio_aligned: bool = True
    name: str = "upsampled"
    warnings: list[str] = field(default_factory=list)
    device: Any = None
    seen: list[PatchBatch] = field(default_factory=list)

    @property
    def spec(self) -> MethodSpec:
        return MethodSpec(
            halo=2,
            tiling=BLENDED,
            needs_lowres=True,
            ratio_aligned=self.ratio_aligned,
            scale=1000.0,
        )

    def tags(self) -> dict[str, str]:
        return {}

    def apply(self, batch: PatchBatch) -> np.ndarray:
        self.seen.append(batch)
        r = self.ratio
        up = np.repeat(np.repeat(batch.lr, r, axis=2), r, axis=3)
        return np.ascontiguousarray(up[:, :, : batch.ms.shape[2], : batch.ms.shape[3]])


def _run(scene, ctx, method, tile: int) -> np.ndarray:
    h, w = scene.out_shape
    out = np.full((scene.n_bands, h, w), np.nan, np.float32)

    def sink(spec, fused, valid):
        out[:, spec.row : spec.row + spec.height, spec.col : spec.col + spec.width] = fused

    execute(scene, method, ctx, sink, settings=RunSettings(tile=tile, overlap=8))
    return out


def test_low_resolution_ms_is_the_scene_lattice_in_every_patch(make_scene):
    paths = make_scene(pan_shape=(300, 276), ratio=4, bands=3, seed=7)
    scene = open_scene(paths.pan, paths.ms)
    ctx = build_context(scene, resolve_sensor(scene, None), FuseOptions(), 16)
    ratio = scene.ratio
    phase = sample_phase(scene)
    tiled = Upsampled(ratio)
    got = _run(scene, ctx, tiled, tile=64)
    whole = _run(scene, ctx, Upsampled(ratio), tile=400)
    assert sum(len(b) for b in tiled.seen) > 4  # several patches
    for b in tiled.seen:
        assert b.lr is not None and b.lr.shape[2] * ratio == b.ms.shape[2]
        for k, (r0, c0) in enumerate(b.origins):
            assert ((r0 - phase[0]) % ratio, (c0 - phase[1]) % ratio) == (0, 0)
            # the MS samples sit on patch pixels 0, ratio, 2 ratio ... (EXP keeps them)
            np.testing.assert_allclose(b.lr[k], b.ms[k][:, ::ratio, ::ratio], rtol=1e-6)
    # blending the same values gives them back: float32 rounding of sum(w v) / sum(w)
    np.testing.assert_allclose(got, whole, rtol=4 * np.finfo(np.float32).eps)


def test_unaligned_patches_would_misplace_the_lattice(make_scene):
    """The test above is not vacuous: without alignment the same method seams."""
    paths = make_scene(pan_shape=(300, 276), ratio=4, bands=3, seed=7)
    scene = open_scene(paths.pan, paths.ms)
    ctx = build_context(scene, resolve_sensor(scene, None), FuseOptions(), 16)
    got = _run(scene, ctx, Upsampled(scene.ratio, ratio_aligned=False), tile=64)
    whole = _run(scene, ctx, Upsampled(scene.ratio, ratio_aligned=False), tile=400)
    assert not np.allclose(got, whole, rtol=1e-3)
