"""Diffusion models through ``fuse`` (models.iterative.windowed): every registered one,
small seeded weights (tests/diffusion_weights.py), an awkward-sized scene.

What must hold: the windows sit on the scene's grid, so ``--tile 128`` and ``--tile
512`` give the same image up to float rounding; across the engine's patch borders and
the windows' own borders neighbouring pixels differ no more than elsewhere; one seed
gives one file, another seed another image; the output is a valid COG with the
sampler's tags; bad settings are refused in one line before anything is written.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from models.registry import model_names
from tests.cli import one_line_error, run_cli
from tests.diffusion_weights import small_model, write_weights
from tests.floats import accumulation_length, assert_rounding_close
from tests.prepared import prepared_method
from tiling.fuse import FuseOptions, fuse_files
from tiling.patches import plan_patches

DIFFUSION = model_names("diffusion")
SHAPE = (300, 276)
RATIO = 4
STEPS = 3
SMALL_TILE, LARGE_TILE = 128, 512


@pytest.fixture
def scene(make_scene):
    return make_scene(pan_shape=SHAPE, ratio=RATIO, bands=4, seed=5)


def _fuse(scene, weights, name, out, tile, seed=3, steps=STEPS) -> np.ndarray:
    opts = FuseOptions(
        method=name, weights=str(weights), device="cpu", tile=tile, patch=tile,
        seed=seed, steps=steps, dtype="float32",
    )  # fmt: skip
    fuse_files(scene.pan, scene.ms, str(out), opts)
    with rasterio.open(out) as ds:
        return ds.read()


def _terms(name: str) -> int:
    """Rounding budget: every step chains the denoiser's accumulations."""
    return STEPS * accumulation_length(small_model(name))


@pytest.mark.parametrize("name", DIFFUSION)
def test_tile_128_and_512_agree_and_leave_no_seam(name, scene, tmp_path):
    weights = write_weights(name, tmp_path / "w.safetensors")
    window = small_model(name).window
    small = plan_patches(*SHAPE, window, tile=SMALL_TILE)
    assert len(small.rows.starts) > 2 and len(small.cols.starts) > 2
    a = _fuse(scene, weights, name, tmp_path / "a.tif", SMALL_TILE)
    b = _fuse(scene, weights, name, tmp_path / "b.tif", LARGE_TILE)
    assert np.isfinite(b).all()
    assert_rounding_close(a, b, _terms(name))
    # neighbour differences on rows/cols where patches or windows meet vs elsewhere
    stride = window - int(small_model(name).window_ramp)
    borders = {s - 1 for s in small.rows.starts} | {
        s + small.rows.patch - 1 for s in small.rows.starts
    }
    borders |= set(range(stride - 1, SHAPE[0] - 1, stride))
    rows = np.zeros(SHAPE[0] - 1, bool)
    rows[[r for r in borders if 0 <= r < SHAPE[0] - 1]] = True
    dv = np.abs(np.diff(a.astype(np.float64), axis=1))
    assert dv[:, rows].mean() <= 1.25 * dv[:, ~rows].mean()


@pytest.mark.parametrize("name", DIFFUSION)
def test_seed_gives_one_image_and_a_valid_cog(name, scene, tmp_path, capsys):
    weights = write_weights(name, tmp_path / "w.safetensors")
    out = tmp_path / "cli.tif"
    args = ["fuse", scene.pan, *scene.ms, "-m", name, "--weights", str(weights)]
    args += ["--seed", "3", "--steps", str(STEPS), "--tile", "256", "--dtype", "float32"]
    args += ["-q", "-o", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    with rasterio.open(out) as ds:
        by_cli, tags = ds.read(), ds.tags()
        assert ds.profile["tiled"] and ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.crs is not None and ds.transform.a == 0.5
    again = _fuse(scene, weights, name, tmp_path / "again.tif", 256, seed=3)
    assert np.array_equal(by_cli, again)
    other = _fuse(scene, weights, name, tmp_path / "other.tif", 256, seed=4)
    assert np.mean(np.abs(other - again) > 0) > 0.5
    assert tags["PANSHARP_SEED"] == "3" and tags["PANSHARP_SAMPLER_STEPS"] == str(STEPS)
    assert tags["PANSHARP_SCHEDULER"].startswith("ddim cosine T=1000")
    assert tags["PANSHARP_WINDOW"].startswith("28 ")


@pytest.mark.parametrize("name", DIFFUSION)
def test_more_steps_change_the_image(name, scene, tmp_path):
    weights = write_weights(name, tmp_path / "w.safetensors")
    one = _fuse(scene, weights, name, tmp_path / "1.tif", 256, steps=1)
    three = _fuse(scene, weights, name, tmp_path / "3.tif", 256, steps=3)
    assert not np.allclose(one, three)


@pytest.mark.parametrize("name", DIFFUSION)
@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--steps", "1001"], ["--steps 1001", "1 to 1000"]),
        (["--tile", "64"], ["--tile 64"]),
    ],
)
def test_bad_settings_refused_in_one_line(name, extra, needles, scene, tmp_path, capsys):
    weights = write_weights(name, tmp_path / "w.safetensors")
    out = tmp_path / "o.tif"
    args = ["fuse", scene.pan, *scene.ms, "-m", name, "--weights", str(weights), *extra]
    code, _, err = run_cli([*args, "-o", str(out)], capsys)
    one_line_error(code, err, *needles)
    assert not out.exists()


@pytest.mark.parametrize("name", DIFFUSION)
def test_stage_one_weights_refused(name, scene, tmp_path, capsys):
    weights = write_weights(name, tmp_path / "w1.safetensors", stage=1)
    out = tmp_path / "o.tif"
    args = ["fuse", scene.pan, *scene.ms, "-m", name, "--weights", str(weights), "-o", str(out)]
    code, _, err = run_cli(args, capsys)
    one_line_error(code, err, "stage-1", "--stage 2")
    assert not out.exists()


@pytest.mark.parametrize("name", DIFFUSION)
def test_no_weights_for_the_sensor_offers_what_the_model_takes(name, scene, tmp_path, capsys):
    """The refusal names --weights, pansharp train and --adapt (which these models take:
    tests/test_diffusion_adapt.py)."""
    out = tmp_path / "o.tif"
    args = ["fuse", scene.pan, *scene.ms, "-m", name, "--sensor", "generic", "-o", str(out)]
    code, _, err = run_cli(args, capsys)
    one_line_error(code, err, "--weights", f"pansharp train -m {name}", "--adapt")
    assert not out.exists()


@pytest.mark.parametrize("name", DIFFUSION)
def test_windows_wholly_in_the_margin_are_skipped(name, scene, tmp_path):
    """apply() with the patch's core given samples fewer windows and keeps the core's
    pixels as they were without it (the engine drops the rest). The patch starts on the
    window grid (origin 0), so its first row and column of windows lie in the margin."""
    from models.protocol import PatchBatch

    weights = write_weights(name, tmp_path / "w.safetensors")
    prepared = prepared_method(
        scene.pan, scene.ms, name, weights=str(weights), device="cpu", seed=3, steps=STEPS
    )
    win = prepared.window
    side = 4 * win
    rng = np.random.default_rng(2)
    field = rng.uniform(0.02, 0.05, (5, side, side)).astype(np.float32)
    core = (win, side - win, win, side - win)
    seen: list[int] = []
    generate = prepared.model.generate

    def counted(ms, *args):
        seen.append(int(ms.shape[0]))
        return generate(ms, *args)

    prepared.model.generate = counted
    outs = []
    for cores in (None, [core]):
        seen.clear()
        batch = PatchBatch(
            [(0, 0)], [(0, 0)], field[None, :4].copy(), field[None, 4:].copy(),
            [np.ones((side, side), bool)], cores=cores,
        )  # fmt: skip
        outs.append((prepared.apply(batch)[0], sum(seen)))
    (whole, n_all), (cored, n_core) = outs
    assert 0 < n_core < n_all
    keep = (slice(None), slice(core[0], core[1]), slice(core[2], core[3]))
    assert_rounding_close(cored[keep], whole[keep], _terms(name))
    assert not np.allclose(cored, whole)  # the margin did change: the skip is real


@pytest.mark.parametrize("name", DIFFUSION)
def test_cpu_forwards_hold_few_windows_and_the_chunk_changes_no_value(
    name, scene, tmp_path, monkeypatch
):
    """On the CPU the windows go through in small forwards (cache-sized, see
    WINDOW_CPU_BUDGET_BYTES), on a GPU in large ones; how many windows share a forward
    changes no pixel beyond float rounding."""
    import dataclasses

    import torch

    from models.iterative import windowed
    from models.protocol import PatchBatch

    weights = write_weights(name, tmp_path / "w.safetensors")
    prepared = prepared_method(
        scene.pan, scene.ms, name, weights=str(weights), device="cpu", seed=3, steps=STEPS
    )
    on_gpu = dataclasses.replace(prepared, device=torch.device("cuda"))
    ratio = windowed.WINDOW_BUDGET_BYTES // windowed.WINDOW_CPU_BUDGET_BYTES
    assert prepared.chunk() >= 1 and on_gpu.chunk() >= ratio * prepared.chunk() > 1
    win = prepared.window
    side = 3 * win
    rng = np.random.default_rng(4)
    field = rng.uniform(0.02, 0.05, (5, side, side)).astype(np.float32)

    def applied() -> np.ndarray:
        batch = PatchBatch(
            [(0, 0)], [(0, 0)], field[None, :4].copy(), field[None, 4:].copy(),
            [np.ones((side, side), bool)],
        )  # fmt: skip
        return prepared.apply(batch)[0]

    chunked = applied()
    monkeypatch.setattr(windowed, "WINDOW_CPU_BUDGET_BYTES", 1)  # one window per forward
    assert prepared.chunk() == 1
    assert_rounding_close(applied(), chunked, _terms(name))


@pytest.mark.parametrize("name", DIFFUSION)
def test_precision_reaches_the_sampler_as_autocast(name, scene, tmp_path, monkeypatch):
    """``--precision bf16`` is not dropped by the windowed sampler: every forward runs
    under ``runtime.autocast(device, precision)`` (CUDA autocast there; on this CPU a
    no-op, so the recorded arguments are what can be checked without a GPU)."""
    import contextlib

    from models.deep import runtime
    from models.protocol import PatchBatch

    weights = write_weights(name, tmp_path / "w.safetensors")
    prepared = prepared_method(
        scene.pan, scene.ms, name, weights=str(weights), device="cpu", seed=3, steps=1,
        precision="bf16",
    )  # fmt: skip
    seen: list[tuple[str, str]] = []

    def recording(device, precision):
        seen.append((device.type, precision))
        return contextlib.nullcontext()

    monkeypatch.setattr(runtime, "autocast", recording)
    side = 2 * prepared.window
    field = np.full((5, side, side), 0.03, np.float32)
    batch = PatchBatch(
        [(0, 0)], [(0, 0)], field[None, :4].copy(), field[None, 4:].copy(),
        [np.ones((side, side), bool)],
    )  # fmt: skip
    prepared.apply(batch)
    assert seen and set(seen) == {("cpu", "bf16")}


@pytest.mark.parametrize("name", DIFFUSION)
def test_the_weights_default_steps_apply_without_steps(name, scene, tmp_path, capsys):
    """A card's ``default_steps`` (written by with_sampler_settings, the tensors copied
    as they are) is the sampler's step count when --steps is not given; --steps still
    wins; a card without one takes the registry's."""
    from models.deep.weights import load_state, with_sampler_settings
    from models.registry import get_entry

    weights = write_weights(name, tmp_path / "w.safetensors")
    two = tmp_path / "w2.safetensors"
    card = with_sampler_settings(weights, two, {"default_steps": 2})
    assert card.kwargs["default_steps"] == 2
    before, after = load_state(weights)[0], load_state(two)[0]
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)

    registry = int(get_entry(name).info.extra["default_steps"])
    assert registry != 2
    for path, steps in ((weights, None), (two, None), (two, 3)):
        prepared = prepared_method(scene.pan, scene.ms, name, weights=str(path), steps=steps)
        expected = steps or (2 if path == two else registry)
        assert prepared.steps == expected
        assert prepared.tags()["PANSHARP_SAMPLER_STEPS"] == str(expected)

    out = tmp_path / "o.tif"
    args = ["fuse", scene.pan, *scene.ms, "-m", name, "--weights", str(two), "--seed", "3"]
    code, _, err = run_cli(
        [*args, "--tile", "256", "--dtype", "float32", "-q", "-o", str(out)], capsys
    )
    assert code == 0, err
    with rasterio.open(out) as ds:
        assert ds.tags()["PANSHARP_SAMPLER_STEPS"] == "2"
        by_default = ds.read()
    explicit = _fuse(scene, two, name, tmp_path / "two.tif", 256, steps=2)
    assert np.array_equal(by_default, explicit)


@pytest.mark.parametrize("setting", [{"default_steps": 0}, {"default_steps": 1001}, {"width": 4}])
def test_sampler_settings_refused_before_anything_is_written(setting, tmp_path):
    from errors import WeightsError
    from models.deep.weights import with_sampler_settings

    weights = write_weights("ksdiff", tmp_path / "w.safetensors")
    dest = tmp_path / "new.safetensors"
    with pytest.raises((WeightsError, ValueError), match=next(iter(setting))):
        with_sampler_settings(weights, dest, setting)
    assert not dest.exists()
