"""``fuse --adapt``: a deep model tailored to a sensor it was not trained on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from tests.cli import one_line_error, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _scene(make_scene):
    s = make_scene(pan_shape=(256, 224), ratio=4, seed=7)
    return [s.pan, *s.ms]


def test_adapted_weights_saved_and_reused_give_the_same_image(make_scene, tmp_path, capsys):
    inputs = _scene(make_scene)
    out, saved = tmp_path / "a.tif", tmp_path / "a.safetensors"
    args = ["fuse", *inputs, "-m", "fusionnet", "--sensor", "worldview2", "--bit-depth", "11"]
    adapt = ["--adapt", "--adapt-steps", "2", "--save-adapted", str(saved)]
    code, stdout, err = run_cli([*args, "-o", str(out), "--json", "-q", *adapt], capsys)
    assert code == 0, err
    rep = json.loads(stdout)["adaptation"]
    assert (rep["mode"], rep["start"], rep["steps"]) == ("tailor", "nearest", 2)
    assert rep["source_weights"] == "fusionnet_landsat-r4.safetensors"
    with rasterio.open(out) as ds:
        adapted = ds.read()
        assert ds.tags()["PANSHARP_ADAPT"].startswith("tailor from nearest")
    again = tmp_path / "b.tif"
    code, _, err = run_cli([*args, "-o", str(again), "-q", "--weights", str(saved)], capsys)
    assert code == 0, err
    with rasterio.open(again) as ds:
        assert np.array_equal(ds.read(), adapted)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["-m", "gsa", "--adapt"], "--adapt"),
        (["-m", "fusionnet", "--adapt", "tailor", "--adapt-time", "-1"], "--adapt-time"),
        (["-m", "fusionnet", "--adapt", "tailor", "--save-adapted", "x.bin", "--adapt-steps", "1"],
         "--save-adapted"),
        (["-m", "fusionnet", "--adapt", "--save-adapted", "EXISTING", "--adapt-steps", "1"],
         "--overwrite"),
    ],
)  # fmt: skip
def test_bad_adapt_options_are_one_line(make_scene, tmp_path, capsys, extra, needle):
    inputs = _scene(make_scene)
    out = tmp_path / "o.tif"
    existing = tmp_path / "kept.safetensors"
    existing.write_bytes(b"mine")
    extra = [str(existing) if e == "EXISTING" else e for e in extra]
    code, _, err = run_cli(["fuse", *inputs, "--sensor", "worldview2", "-o", str(out), "-q",
                            *extra], capsys)  # fmt: skip
    one_line_error(code, err, needle)
    assert not out.exists() and existing.read_bytes() == b"mine"


def test_eight_band_scene_adapts_from_scratch(make_scene, tmp_path, capsys):
    """No weights of any model have 8 bands: without --adapt the refusal names it; with
    it the network is trained on the scene itself (zero-shot, the whole network: there is
    nothing to tailor), the 8-band output is finite and not flat, and the JSON and tag
    say where it started."""
    s = make_scene(pan_shape=(192, 160), ratio=4, bands=8, seed=3)
    out = tmp_path / "z.tif"
    args = ["fuse", s.pan, *s.ms, "-m", "fusionnet", "--sensor", "worldview2", "-o", str(out)]
    code, _, err = run_cli([*args, "-q"], capsys)
    one_line_error(code, err, "--adapt")
    assert not out.exists()
    code, stdout, err = run_cli([*args, "--json", "-q", "--adapt", "--adapt-steps", "3"], capsys)
    assert code == 0, err
    rep = json.loads(stdout)["adaptation"]
    assert (rep["mode"], rep["start"], rep["steps"]) == ("full", "zero-shot", 3)
    with rasterio.open(out) as ds:
        assert ds.count == 8 and ds.tags()["PANSHARP_ADAPT"].startswith("full from zero-shot")
        img = ds.read().astype(np.float64)
    assert np.isfinite(img).all() and img.std(axis=(1, 2)).min() > 0


def test_evaluate_reports_each_protocols_own_adaptation(make_scene, capsys):
    """evaluate --adapt adapts the deep method once per protocol, on that protocol's own
    inputs, and each scored row carries its report; a classical method has none."""
    s = make_scene(pan_shape=(336, 320), ratio=4, seed=7)  # the reduced protocol needs 73+ MS px
    args = ["evaluate", s.pan, *s.ms, "-m", "fusionnet", "-m", "gsa", "--sensor", "worldview2"]
    code, stdout, err = run_cli([*args, "--adapt", "--adapt-steps", "2", "--json", "-", "-q"],
                                capsys)  # fmt: skip
    assert code == 0, err
    rows = {(r["method"], r["scale"]): r for r in json.loads(stdout)["results"]}
    assert set(rows) == {(m, s) for m in ("fusionnet", "gsa") for s in ("reduced", "full")}
    reps = [rows["fusionnet", s]["adaptation"] for s in ("reduced", "full")]
    for rep in reps:
        assert (rep["mode"], rep["start"], rep["steps"]) == ("tailor", "nearest", 2)
    assert reps[0]["loss_start"] != reps[1]["loss_start"]  # two scenes, two adaptations
    assert "adaptation" not in rows["gsa", "reduced"] and "adaptation" not in rows["gsa", "full"]
