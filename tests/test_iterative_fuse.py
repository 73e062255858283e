"""A diffusion model through ``fuse``: the toy denoiser (tests/toy_diffusion.py), 4 DDIM
steps with ancestral noise, on an awkward-sized scene, tiled small and whole.

What must hold (models.iterative.method): with a patch margin of steps x the denoiser's
halo and noise drawn by absolute pixel, any patch size gives the whole-image samples up
to float rounding, patch borders leave no seam, one ``--seed`` gives one image, and the
toy lives in the registry only while its fixture does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from models.protocol import BLENDED, PatchBatch
from models.registry import model_names
from tests.cli import one_line_error, run_cli
from tests.floats import accumulation_length, assert_rounding_close, atol_for
from tests.prepared import prepared_method
from tests.toy_diffusion import (  # noqa: F401 - toy_diffusion_fixture is the fixture
    TOY_NAME,
    TOY_STEPS,
    Toy,
    ToyDenoiser,
    registered_toy,
    toy_diffusion_fixture,
)
from tiling.fuse import FuseOptions, fuse_files
from tiling.patches import AxisPlan, plan_patches

SHAPE = (300, 276)  # a multiple of the ratio (make_scene keeps whole MS pixels), of no patch
RATIO = 4
BANDS = 4
SMALL, LARGE = 96, 512
# Rounding: every step's denoiser is one accumulation of its fan-ins (tests/floats.py);
# the sampler chains TOY_STEPS of them.
TERMS = TOY_STEPS * accumulation_length(ToyDenoiser(BANDS))


@pytest.fixture
def scene(make_scene):
    return make_scene(pan_shape=SHAPE, ratio=RATIO, bands=BANDS, seed=7)


def fused(scene, out: Path, toy: Toy, tile: int, seed: int = 3) -> np.ndarray:
    """``fuse -m toy-diffusion --weights W --tile TILE --seed SEED --dtype float32``."""
    opts = FuseOptions(
        method=toy.name,
        weights=str(toy.weights),
        device="cpu",
        tile=tile,
        patch=tile,
        seed=seed,
        dtype="float32",
    )
    fuse_files(scene.pan, scene.ms, str(out), opts)
    with rasterio.open(out) as ds:
        return ds.read()


def halo_of(toy: Toy) -> int:
    return toy.record.halo(RATIO)


# -- tiled == whole ----------------------------------------------------------------------
def test_tile_96_and_512_agree_to_rounding(scene, toy_diffusion, tmp_path):
    small = plan_patches(*SHAPE, halo_of(toy_diffusion), tile=SMALL)
    assert len(small.rows.starts) > 2 and len(small.cols.starts) > 2  # real interior seams
    assert plan_patches(*SHAPE, halo_of(toy_diffusion), tile=LARGE).count == 1
    a = fused(scene, tmp_path / "96.tif", toy_diffusion, SMALL)
    b = fused(scene, tmp_path / "512.tif", toy_diffusion, LARGE)
    assert np.isfinite(b).all()
    assert_rounding_close(a, b, TERMS)


def _seam_pairs(axis: AxisPlan) -> np.ndarray:
    """Bool over neighbour pairs (r, r + 1), r = 0 .. length - 2: True where the pair
    touches the rows two patches share (both weights non-zero), or crosses into them."""
    pairs = np.zeros(axis.length - 1, dtype=bool)
    for i in range(len(axis.starts) - 1):
        lo = axis.core_start(i + 1) - 1
        hi = axis.core_start(i) + axis.core  # first row patch i no longer weights
        pairs[max(lo, 0) : min(hi, axis.length - 1)] = True
    return pairs


def _neighbour_means(img: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[float, ...]:
    """Mean |vertical difference| on seam / other row pairs, then the same horizontally."""
    dv = np.abs(np.diff(img.astype(np.float64), axis=1))  # (B, H-1, W)
    dh = np.abs(np.diff(img.astype(np.float64), axis=2))  # (B, H, W-1)
    return (
        float(dv[:, rows].mean()),
        float(dv[:, ~rows].mean()),
        float(dh[:, :, cols].mean()),
        float(dh[:, :, ~cols].mean()),
    )


def test_patch_borders_leave_no_seam(scene, toy_diffusion, tmp_path):
    """Neighbour differences across the rows/cols where tile-96 patches meet are those
    inside patches, and no larger than the whole-image run's at the same rows/cols."""
    plan = plan_patches(*SHAPE, halo_of(toy_diffusion), tile=SMALL)
    rows, cols = _seam_pairs(plan.rows), _seam_pairs(plan.cols)
    assert rows.any() and (~rows).any() and cols.any() and (~cols).any()
    small = fused(scene, tmp_path / "96.tif", toy_diffusion, SMALL)
    whole = fused(scene, tmp_path / "512.tif", toy_diffusion, LARGE)
    v_seam, v_in, h_seam, h_in = _neighbour_means(small, rows, cols)
    assert v_seam <= 1.5 * v_in and h_seam <= 1.5 * h_in
    ref_v, _, ref_h, _ = _neighbour_means(whole, rows, cols)
    slack = 2 * atol_for(whole, TERMS)  # a difference of two values, each within rounding
    assert v_seam <= ref_v + slack and h_seam <= ref_h + slack


# -- the seed --------------------------------------------------------------------------
def test_same_seed_is_bit_identical_and_another_seed_differs(
    scene, toy_diffusion, tmp_path, capsys
):
    out = tmp_path / "cli.tif"
    args = ["fuse", scene.pan, *scene.ms, "-m", TOY_NAME, "--weights", str(toy_diffusion.weights)]
    args += ["--seed", "3", "--tile", str(SMALL), "--dtype", "float32", "-q", "-o", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    with rasterio.open(out) as ds:
        by_cli, tags = ds.read(), ds.tags()
    again = fused(scene, tmp_path / "again.tif", toy_diffusion, SMALL, seed=3)
    assert np.array_equal(by_cli, again)
    other = fused(scene, tmp_path / "other.tif", toy_diffusion, SMALL, seed=4)
    assert np.mean(other != again) > 0.99  # fresh noise at (nearly) every value
    assert tags["PANSHARP_SEED"] == "3"
    assert tags["PANSHARP_SAMPLER_STEPS"] == str(TOY_STEPS)
    assert tags["PANSHARP_SCHEDULER"] == toy_diffusion.sampler.describe()
    assert tags["PANSHARP_WEIGHTS"] == toy_diffusion.weights.name


@pytest.mark.parametrize("method", ["brovey", "fusionnet"])
def test_seed_is_refused_by_methods_without_noise(method, scene, tmp_path, capsys):
    out = tmp_path / "o.tif"
    args = ["fuse", scene.pan, *scene.ms, "-m", method, "--seed", "3", "-o", str(out)]
    code, _, err = run_cli(args, capsys)
    one_line_error(code, err, "--seed", f"-m {method}")
    assert not out.exists()


# -- the registry ----------------------------------------------------------------------
def test_the_toy_is_not_in_the_shipped_registry():
    assert TOY_NAME not in model_names()


def _listed(capsys) -> dict[str, dict]:
    code, out, err = run_cli(["models", "--json"], capsys)
    assert code == 0, err
    return {d["name"]: d for d in json.loads(out)}


def test_models_lists_the_toy_only_while_registered(tmp_path, capsys):
    with registered_toy(tmp_path) as toy:
        row = _listed(capsys)[TOY_NAME]
        assert row["halo_at_ratio"]["4"] == halo_of(toy) == TOY_STEPS * ToyDenoiser(1).halo
        assert "seed" in row["run_options"] and row["torch"]
    assert TOY_NAME not in _listed(capsys)
    assert TOY_NAME not in model_names()


# -- the prepared method and apply() ----------------------------------------------------
def _prepared(scene_paths, toy: Toy, seed: int = 3):
    return prepared_method(
        scene_paths.pan, scene_paths.ms, toy.name, weights=str(toy.weights), device="cpu",
        seed=seed,
    )  # fmt: skip


def test_prepared_spec_halo_is_steps_times_the_denoisers(scene, toy_diffusion):
    prepared = _prepared(scene, toy_diffusion)
    spec = prepared.spec
    assert spec.halo == TOY_STEPS * prepared.model.halo == halo_of(toy_diffusion)
    assert spec.tiling == BLENDED and spec.stochastic
    assert spec.scale == prepared.card.scale
    assert prepared.steps == TOY_STEPS


P = 64
SHIFT = (8, 12)  # batch B starts this much below/right of batch A


def _overlapping_batches(origin: tuple[int, int]) -> tuple[PatchBatch, PatchBatch]:
    """Two one-patch batches cut from one seeded field, B shifted by SHIFT from A."""
    rng = np.random.default_rng(11)
    field = rng.uniform(0.02, 0.05, (BANDS + 1, P + SHIFT[0], P + SHIFT[1])).astype(np.float32)

    def cut(dr: int, dc: int) -> PatchBatch:
        win = field[:, dr : dr + P, dc : dc + P]
        return PatchBatch(
            ids=[(0, 0)],
            origins=[(origin[0] + dr, origin[1] + dc)],
            ms=np.ascontiguousarray(win[None, :BANDS]),
            pan=np.ascontiguousarray(win[None, BANDS:]),
            valid=[np.ones((P, P), dtype=bool)],
        )

    return cut(0, 0), cut(*SHIFT)


@pytest.mark.parametrize("origin", [(0, 0), (-5, -7), (1000, 40)])
def test_overlapping_patches_draw_the_same_noise(origin, scene, toy_diffusion):
    prepared = _prepared(scene, toy_diffusion)
    a, b = _overlapping_batches(origin)
    dr, dc = SHIFT
    xa, xb = prepared.initial_noise(a), prepared.initial_noise(b)
    assert xa.shape == (1, BANDS, P, P)
    assert torch.equal(xa[..., dr:, dc:], xb[..., : P - dr, : P - dc])
    assert not torch.equal(xa[..., :-dr, :-dc], xb[..., : P - dr, : P - dc])  # keyed by place
    t = toy_diffusion.sampler.T - 1
    assert torch.equal(prepared.noise(a, t)[..., dr:, dc:], prepared.noise(b, t)[..., :-dr, :-dc])
    assert not torch.equal(prepared.noise(a, t), xa)  # each step has its own noise
    other = _prepared(scene, toy_diffusion, seed=4)
    assert not torch.equal(other.initial_noise(a), xa)


def test_overlapping_patches_agree_beyond_the_halo(scene, toy_diffusion):
    """apply() on two overlapping patches: equal (to rounding) on the overlap's pixels at
    least ``halo`` from both patches' borders; on B's own border row, where B sees its
    zero padding and A sees the scene, they differ (the margin is needed at all)."""
    prepared = _prepared(scene, toy_diffusion)
    halo = prepared.spec.halo
    a, b = _overlapping_batches((-5, -7))
    ya, yb = prepared.apply(a)[0], prepared.apply(b)[0]
    assert ya.shape == (BANDS, P, P) and ya.dtype == np.float32
    dr, dc = SHIFT
    # B's pixel (i, j) is A's (i + dr, j + dc); B's top/left border is inside A
    ya_on_b = ya[:, dr:, dc:]
    yb_on_a = yb[:, : P - dr, : P - dc]
    far = (slice(None), slice(halo, P - dr - halo), slice(halo, P - dc - halo))
    assert_rounding_close(yb_on_a[far], ya_on_b[far], TERMS)
    edge = (slice(None), 0, slice(halo, P - dc - halo))  # B's first row
    gap = float(np.abs(yb_on_a[edge] - ya_on_b[edge]).max())
    assert gap > atol_for(ya_on_b[far], TERMS)
