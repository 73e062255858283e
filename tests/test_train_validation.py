"""Training's validation through the executor: it scores what ``pansharp fuse`` writes."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import models.deep.validation as validation
from models.deep.readers import ArrayPair, open_file_pairs
from models.deep.sampler import StreamingScene, split_windows
from models.deep.train import checkpoint_paths, train
from models.deep.validation import (
    Crop,
    choose_crops,
    held_out,
    write_crop,
)
from models.registry import create_model
from physics.kernels import axis_matrix
from physics.sensors import get_sensor
from raster.pairs import PairSpec
from raster.scene import open_scene
from tests.floats import EPS32, accumulation_length
from tiling.executor import run_method
from tiling.fuse import FuseOptions, build_context, fuse_files

SENSOR = get_sensor("landsat8")
GAINS = SENSOR.gains(4)
BITS = 12
SCALE = float(2**BITS - 1)
SMALL = {"channels": 8}
FAST = dict(patch=16, batch_size=4, lr=2e-3, bit_depth=BITS, model_kwargs=SMALL, device="cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _files(make_scene, shape: tuple[int, int], n: int = 1, **kw):
    scenes = [make_scene(pan_shape=shape, ratio=2, seed=i, name=f"s{i}", **kw) for i in range(n)]
    specs = [PairSpec(s.pan, s.ms[0], f"s{i}") for i, s in enumerate(scenes)]
    return open_file_pairs(specs, SENSOR)


def _crop_files(folder: Path) -> list[tuple[Path, Path, Path]]:
    """(PAN_LR, MS_LR, reference) of every crop written in a validation folder."""
    pans = sorted(folder.glob("*_pan.tif"))
    return [
        (p, p.with_name(p.name[:-7] + "ms.tif"), p.with_name(p.name[:-7] + "ref.tif")) for p in pans
    ]


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float64)


def _scores(fused: list[np.ndarray], refs: list[np.ndarray]) -> tuple[float, float, float]:
    """(L1, PSNR, max |reference|) in normalised units over the valid pixels, numpy."""
    errs = []
    for f, r in zip(fused, refs, strict=True):
        ok = np.isfinite(r).all(axis=0)
        errs.append(((f - r) / SCALE)[:, ok])
    err = np.concatenate(errs, axis=1)
    mse = float(np.mean(err**2))
    top = max(float(np.nanmax(np.abs(r))) for r in refs) / SCALE
    return float(np.mean(np.abs(err))), float(10 * np.log10(1 / mse)), top


# -- (1) + (2): the metrics are fuse's, on several patches -------------------------------


# The crops have a geotransform but no CRS (a local grid in original PAN pixels); fuse's
# COG writer then drops the geotransform too (raster/fastcog.py), and rasterio warns when
# the fused file is read back: its pixels are what is compared here.
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_validation_equals_fuse_of_the_written_scene(tmp_path, make_scene):
    """At each checkpoint, ``fuse_files`` of the written degraded crop with the
    checkpoint's weights (float32 output) scored with numpy gives the reported metrics;
    the held-out band (24 x 800 degraded pixels) is wider than one patch."""
    files = _files(make_scene, (240, 1600))
    out = tmp_path / "w.safetensors"
    fused_dir = tmp_path / "fused"
    fused_dir.mkdir()
    seen: list[dict] = []

    def check(info: dict) -> None:
        if info["event"] != "checkpoint":
            return
        (folder,) = tmp_path.glob("w.validation-*")
        fused, fused_exp, refs = [], [], []
        for k, (pan, ms, ref) in enumerate(_crop_files(folder)):
            for method, into in (("dicnn", fused), ("exp", fused_exp)):
                target = fused_dir / f"{method}_{info['step']}_{k}.tif"
                opts = FuseOptions(
                    method=method,
                    sensor="landsat8",
                    weights=info["checkpoint"] if method == "dicnn" else None,
                    device="cpu",
                    dtype="float32",
                    bit_depth=BITS,
                )
                fuse_files(str(pan), [str(ms)], str(target), opts)
                into.append(_read(target))
            refs.append(_read(ref))
        seen.append({"val": info["val"], "fused": fused, "exp": fused_exp, "refs": refs})

    res = train(
        "dicnn", files.pairs, "landsat8", files.ratio, out, steps=10, checkpoint_every=5,
        val_fraction=0.2, progress=check, **FAST,
    )  # fmt: skip
    files.pairs[0].close()
    assert len(seen) == 2
    # One executor run against another on the same file with the same settings: equal
    # to the rounding of one network evaluation (accumulation length x eps32 x the
    # largest value), which bounds each pixel's difference and so the means'.
    terms = accumulation_length(create_model("dicnn", n_bands=4, **SMALL))
    for got in seen:
        val = got["val"]
        l1, psnr, top = _scores(got["fused"], got["refs"])
        l1_exp, _, _ = _scores(got["exp"], got["refs"])
        tol = terms * EPS32 * top
        assert abs(val["val_l1"] - l1) <= tol, (val, l1, tol)
        assert abs(val["val_l1_exp"] - l1_exp) <= tol, (val, l1_exp, tol)
        # PSNR = -10 log10(mse): d(PSNR) = 10/ln 10 x d(mse)/mse, d(mse) <= 2 |err| tol
        mse = 10 ** (-psnr / 10)
        assert abs(val["val_psnr_db"] - psnr) <= 10 / np.log(10) * 2 * top * tol / mse
        assert val["val_pixels"] == 24 * 800 and val["val_regions"] == 1
        assert val["val_patches"] > 1  # (2) the executor planned and blended several patches
    assert res.card.training["val_crops"] == [{"scene": "s0", "rows": [96, 120], "cols": [0, 800]}]
    assert seen[-1]["val"]["val_l1"] == res.card.validation["val_l1"]


def test_several_held_out_scenes_one_crop_each(tmp_path, make_scene):
    """Held-out whole scenes: one crop each, the executor's facts kept per crop."""
    files = _files(make_scene, (192, 192), n=4)
    sources_shapes = [(96, 96)] * 4
    names = [p.name for p in files.pairs]
    areas = [(i, (0, 96, 0, 96)) for i in (1, 3)]
    crops = choose_crops(areas, names, 2, side=64)
    assert [c.box for c in crops] == [(16, 80, 16, 80)] * 2 and [c.name for c in crops] == [
        "s1",
        "s3",
    ]
    with held_out(
        files.pairs, sources_shapes, crops, out_path=tmp_path / "w.safetensors", sensor=SENSOR,
        ratio=2, scale=SCALE, bit_depth=BITS,
    ) as held:  # fmt: skip
        model = create_model("dicnn", n_bands=4, **SMALL)
        card = _card(model)
        val = held.evaluate(
            "dicnn", model, card, tmp_path / "none.safetensors", torch.device("cpu")
        )
        assert model.training  # back in training mode
        assert len(held.facts) == 2 and all(f["patches"] >= 1 for f in held.facts)
        assert val is not None and val["val_pixels"] == 2 * 64 * 64 and val["val_regions"] == 2
        assert val["val_patches"] == sum(f["patches"] for f in held.facts)
    for p in files.pairs:
        p.close()
    assert not list(tmp_path.glob("w.validation-*"))


def _card(model):
    from models.deep.card import WeightsCard

    return WeightsCard(
        model="dicnn", kwargs=dict(model.config), sensor="landsat8",
        band_names=["b1", "b2", "b3", "b4"], ratio=2, bit_depth=BITS, scale=SCALE,
    )  # fmt: skip


# -- the written crop is the sampler's degraded pair ---------------------------------------


def test_written_crop_is_the_training_pair(tmp_path, make_scene):
    """PAN_LR and the reference equal the sampler's pan and target, and the executor's
    EXP of MS_LR (the geometry of the written files) its ms_up away from the crop's
    border (there the crop's own border replaces the scene's samples)."""
    files = _files(make_scene, (240, 240))
    pair = files.pairs[0]
    stream = StreamingScene(pair, GAINS, 2, SCALE)
    crop = Crop(0, "s0", (10, 110, 20, 100))
    f = write_crop(pair, stream.shape, crop, GAINS, 2, tmp_path, 0)
    scene = open_scene(f.pan, [f.ms])
    assert scene.ratio == 2 and scene.out_shape == crop.shape
    ctx = build_context(scene, SENSOR, FuseOptions(sensor="landsat8"), BITS)
    exp = np.zeros((4, *crop.shape))

    def sink(spec, fused, valid) -> None:
        exp[:, spec.row : spec.row + spec.height, spec.col : spec.col + spec.width] = fused

    run_method(scene, "exp", ctx, sink, sensor="landsat8")
    pair.close()
    m = 13 * 2  # the EXP's reach: 11.5 MS_LR samples of 2 pixels, plus the phase
    y, x = 10 + m, 20 + m
    size = 80 - 2 * m
    ms_up, pan, target = stream.patch(y, x, size)
    inner = (slice(m, m + size), slice(m, m + size))
    # PAN_LR and the reference: written in float32 (exact or half a unit), divided by
    # the scale (a unit), against the sampler's product by the rounded 1/scale (a unit)
    np.testing.assert_allclose(_read(f.pan)[0][inner] / SCALE, pan[0], rtol=0, atol=3 * EPS32)
    np.testing.assert_allclose(
        _read(f.ref)[(slice(None), *inner)] / SCALE, target, rtol=0, atol=3 * EPS32
    )
    # EXP: MS_LR rounded to float32 (half a unit) summed with weights of absolute sum
    # ``gain`` per axis, then the same normalisation (two units)
    row = axis_matrix(np.arange(40) / 2 - 0.5, 40, "exp")
    gain = float(np.abs(row).sum(axis=1).max()) ** 2
    atol = (gain / 2 + 2) * EPS32 * float(np.abs(ms_up).max())
    np.testing.assert_allclose(exp[(slice(None), *inner)] / SCALE, ms_up, rtol=0, atol=atol)


def test_nodata_is_left_out_and_crops_are_deterministic(tmp_path, make_scene):
    """The reference is NaN exactly where the sampler refuses a patch (the nodata
    reach), and two writes are equal."""
    files = _files(make_scene, (240, 240), nodata=0, nodata_box=(80, 80, 120, 120))
    pair = files.pairs[0]
    stream = StreamingScene(pair, GAINS, 2, SCALE, nodata=None)
    crop = Crop(0, "s0", (0, 120, 0, 120))
    a = write_crop(pair, stream.shape, crop, GAINS, 2, tmp_path, 0)
    b = write_crop(pair, stream.shape, crop, GAINS, 2, tmp_path, 1)
    pair.close()
    for u, v in zip((a.pan, a.ms, a.ref), (b.pan, b.ms, b.ref), strict=True):
        assert np.array_equal(_read(u), _read(v), equal_nan=True)
    bad = ~np.isfinite(_read(a.ref)).all(axis=0)
    assert 0 < bad.sum() < bad.size
    for y, x in [(0, 0), (30, 30), (50, 50), (100, 100), (60, 100)]:
        # a 1-pixel patch is refused exactly where the reference pixel is NaN
        assert (stream.patch(y, x, 1) is None) == bool(bad[y, x])
    assert np.isfinite(_read(a.pan)).all() and np.isfinite(_read(a.ms)).all()


# -- (3) temporary files -----------------------------------------------------------------


def test_temporary_folder_removed_at_the_end_on_error_and_interruption(
    tmp_path, make_scene, monkeypatch
):
    files = _files(make_scene, (192, 192), n=3)
    run = dict(
        FAST, steps=10, checkpoint_every=5, val_fraction=0.34, pairs=files.pairs,
        sensor="landsat8", ratio=2,
    )  # fmt: skip
    during: dict[str, list[int]] = {"checkpoint": [], "step": [], "done": []}

    def spy(info: dict) -> None:
        found = list((tmp_path / "a").glob("a.validation-*/*.tif"))
        during[info["event"]].append(len(found))

    train("dicnn", out_path=tmp_path / "a" / "a.safetensors", progress=spy, **run)
    # PAN_LR, MS_LR and the reference of the held-out scene while training; gone at "done"
    assert during == {"checkpoint": [3, 3], "step": [], "done": [0]}
    names = {p.name for p in (tmp_path / "a").iterdir()}
    assert names == {
        "a.safetensors",
        *(p.name for p in checkpoint_paths(tmp_path / "a/a.safetensors")),
    }

    def interrupt(info: dict) -> None:
        if info["step"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("dicnn", out_path=tmp_path / "b" / "b.safetensors", progress=interrupt, **run)
    assert not list((tmp_path / "b").glob("*validation*"))

    def broken(*args, **kwargs):
        raise RuntimeError("executor failed")

    monkeypatch.setattr(validation, "execute", broken)
    with pytest.raises(RuntimeError, match="executor failed"):
        train("dicnn", out_path=tmp_path / "c" / "c.safetensors", **run)
    assert (tmp_path / "c").is_dir() and not list((tmp_path / "c").glob("*validation*"))
    for p in files.pairs:
        p.close()


# -- (4) bounded size ----------------------------------------------------------------------


def test_validation_area_is_capped(tmp_path, make_scene):
    """A held-out band of 240 x 600 degraded pixels is validated on one centred crop of
    at most val_side x val_side; the files written hold no more."""
    files = _files(make_scene, (1200, 1200))
    split = split_windows([StreamingScene(files.pairs[0], GAINS, 2, SCALE)], 0.4, 0, 16, 2)
    ((_, band),) = split.val
    assert (band[1] - band[0], band[3] - band[2]) == (240, 600)
    sizes: list[list[tuple[int, ...]]] = []

    def spy(info: dict) -> None:
        if info["event"] == "done":
            return
        for group in _crop_files(next(tmp_path.glob("w.validation-*"))):
            sizes.append([_read(p).shape for p in group])

    res = train(
        "dicnn", files.pairs, "landsat8", 2, tmp_path / "w.safetensors", steps=2,
        checkpoint_every=2, val_fraction=0.4, val_side=64, progress=spy, **FAST,
    )  # fmt: skip
    files.pairs[0].close()
    assert sizes and all(s == [(1, 64, 64), (4, 32, 32), (4, 64, 64)] for s in sizes)
    (crop,) = res.card.training["val_crops"]
    assert crop["rows"][1] - crop["rows"][0] == crop["cols"][1] - crop["cols"][0] == 64
    assert band[0] <= crop["rows"][0] and crop["rows"][1] <= band[1]
    assert res.card.validation["val_pixels"] == 64 * 64


def test_writing_a_crop_takes_memory_set_by_the_crop_not_the_scene(tmp_path):
    """The same crop (with its halo inside both scenes) cut from a scene 16 x larger:
    numpy's peak allocation while writing it is the same."""
    peaks = []
    for k, side in enumerate((200, 800)):
        pan = np.add.outer(np.arange(2 * side), np.arange(2 * side)).astype(np.uint16) % 3000
        ms = np.stack([pan[::2, ::2] + b for b in range(4)])
        reader = ArrayPair(pan, ms, f"s{side}")
        c0 = side // 2 // 2 * 2 - 32
        crop = Crop(0, reader.name, (c0, c0 + 64, c0, c0 + 64))
        tracemalloc.start()
        write_crop(reader, (side, side), crop, GAINS, 2, tmp_path, k)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    small, large = peaks
    assert large <= 1.05 * small, peaks


def test_validation_is_deterministic_and_resumes_exactly(tmp_path, make_scene):
    """The same run twice, and a run stopped at step 5 then resumed from its checkpoint,
    report the same validation at step 10 (no state of the validation leaks into the
    training or back)."""
    files = _files(make_scene, (192, 192), n=3)
    kw = dict(FAST, steps=10, checkpoint_every=5, val_fraction=0.34)
    a = train("dicnn", files.pairs, "landsat8", 2, tmp_path / "a.safetensors", **kw)
    b = train("dicnn", files.pairs, "landsat8", 2, tmp_path / "b.safetensors", **kw)

    class Stop(Exception):
        pass

    def stop_at_5(info: dict) -> None:
        if info["step"] == 5:
            raise Stop

    with pytest.raises(Stop):
        train(
            "dicnn",
            files.pairs,
            "landsat8",
            2,
            tmp_path / "c.safetensors",
            progress=stop_at_5,
            **kw,
        )
    resumed = train(
        "dicnn", files.pairs, "landsat8", 2, tmp_path / "d.safetensors",
        resume=checkpoint_paths(tmp_path / "c.safetensors")[0], **kw,
    )  # fmt: skip
    for p in files.pairs:
        p.close()
    assert a.card.validation == b.card.validation == resumed.card.validation
    assert a.card.validation["val_pixels"] == 96 * 96


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_equalising_network_trains_and_validates_on_each_scenes_own_tables(
    tmp_path, make_scene, monkeypatch
):
    """PreMix-H equalises by scene statistics. Training: every window gets the tables
    of the scene it was drawn from (per-sample counts, rows of the per-scene statistics);
    validation: each held-out crop its own, as ``fuse`` computes them, so the metric is
    fuse's; the saved tables are the pooled training statistics."""
    from types import SimpleNamespace

    from models.deep.premix import PreMixH
    from models.deep.premix_parts import cumulative_tables
    from models.deep.sampler import open_sources
    from models.deep.train_setup import training_histograms
    from models.deep.weights import load_state

    files = _files(make_scene, (96, 320), n=3)
    calls: list[np.ndarray] = []
    real = PreMixH.set_equalisation

    def spy(self, ms_hist, pan_hist):
        if np.ndim(ms_hist) == 3:
            calls.append(np.asarray(ms_hist))
        return real(self, ms_hist, pan_hist)

    monkeypatch.setattr(PreMixH, "set_equalisation", spy)
    out = tmp_path / "w.safetensors"
    fused_dir = tmp_path / "fused"
    fused_dir.mkdir()
    seen: list[tuple[dict, list[np.ndarray], list[np.ndarray]]] = []

    def check(info: dict) -> None:
        if info["event"] != "checkpoint":
            return
        (folder,) = tmp_path.glob("w.validation-*")
        fused, refs = [], []
        for k, (pan, ms, ref) in enumerate(_crop_files(folder)):
            target = fused_dir / f"{info['step']}_{k}.tif"
            opts = FuseOptions(method="premix-h", sensor="landsat8", weights=info["checkpoint"],
                               device="cpu", dtype="float32", bit_depth=BITS)  # fmt: skip
            fuse_files(str(pan), [str(ms)], str(target), opts)
            fused.append(_read(target))
            refs.append(_read(ref))
        seen.append((info["val"], fused, refs))

    train(
        "premix-h", files.pairs, "landsat8", files.ratio, out, steps=3, checkpoint_every=3,
        val_fraction=0.34, progress=check, **FAST,
    )  # fmt: skip
    assert len(seen) == 1 and len(calls) == 3  # one per-sample set of tables per step
    sources = open_sources(files.pairs, SENSOR.gains, files.ratio, SCALE)
    split = split_windows(sources, 0.34, 0, FAST["patch"], files.ratio)
    bins = SimpleNamespace(equalisation_bins=256)
    ms_s, pan_s = training_histograms(sources, split.train, FAST["patch"], 0, bins)
    for p in files.pairs:
        p.close()
    train_idx = sorted({i for i, _ in split.train})
    assert len(train_idx) == 2
    for batch in calls:
        assert batch.shape == (FAST["batch_size"], 4, 256)
        assert all(any(np.array_equal(row, ms_s[i]) for i in train_idx) for row in batch)
    tensors, _ = load_state(out)
    pooled = cumulative_tables(torch.as_tensor(ms_s.sum(0))).float()
    assert torch.allclose(tensors["he_ms"], pooled, atol=0)
    val, fused, refs = seen[0]
    l1, _, top = _scores(fused, refs)
    assert abs(val["val_l1"] - l1) <= 16 * EPS32 * top, (val["val_l1"], l1)
