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
