"""The parts of a batch run: fingerprints, scene listing, the per-process weights cache."""

from __future__ import annotations

import os

import pytest

from batch.fingerprint import fingerprint
from batch.scenes import list_scenes
from errors import OptionError
from tiling.fuse import FuseOptions
from tiling.job import FuseJob


def _files(tmp_path, names=("a", "b")):
    tmp_path.mkdir(parents=True, exist_ok=True)
    for n in names:
        (tmp_path / f"{n}_pan.tif").write_bytes(b"p" + n.encode())
        (tmp_path / f"{n}_ms.tif").write_bytes(b"m" + n.encode())
    return tmp_path


def test_fingerprint_follows_inputs_and_options_only(tmp_path):
    _files(tmp_path)
    pan, ms = str(tmp_path / "a_pan.tif"), (str(tmp_path / "a_ms.tif"),)
    base = fingerprint(FuseJob(pan, ms, "o.tif", FuseOptions()), "1")
    same = FuseJob(str(tmp_path / "." / "a_pan.tif"), ms, "o.tif",
                   FuseOptions(threads=3, overwrite=True, tags={"x": "y"}))  # fmt: skip
    assert fingerprint(same, "1") == base  # path spelling, threads, overwrite, tags
    assert fingerprint(FuseJob(pan, ms, "o.tif", FuseOptions(method="brovey")), "1") != base
    assert fingerprint(FuseJob(pan, ms, "o.tif", FuseOptions()), "2") != base  # version
    st = os.stat(pan)
    os.utime(pan, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))  # touched: redo
    assert fingerprint(FuseJob(pan, ms, "o.tif", FuseOptions()), "1") != base


def test_scene_listing_names_and_outputs(tmp_path):
    folder = _files(tmp_path / "in", ("x", "y"))
    items = list_scenes([str(folder)], tmp_path / "out", "gsa")
    assert [(i.name, os.path.basename(i.out)) for i in items] == [
        ("x", "x_gsa.tif"),
        ("y", "y_gsa.tif"),
    ]
    twice = list_scenes([str(folder / "x_pan.tif"), str(folder / "x_pan.tif")], "o", "gsa")
    assert [i.name for i in twice] == ["x", "x-1"]  # names made unique, outputs too
    with pytest.raises(OptionError, match="two scenes would write"):
        list_scenes([str(folder / "x_pan.tif")] * 2, "o", "gsa", "same.tif")
    with pytest.raises(OptionError, match="end it in .tif"):
        list_scenes([str(folder)], "o", "gsa", "{name}.png")
    missing = list_scenes([str(folder / "x_pan.tif").replace("x_", "z_")], "o", "gsa")
    assert missing[0].ms[0].endswith("z_ms.tif")  # listed: its run reports the file


def test_weights_are_read_once_per_process(tmp_path, monkeypatch):
    """A worker fusing many scenes reads a weights file once; a rewritten file again."""
    import shutil

    import models.deep.weights as w

    src = w.default_weights_path("pannet", "landsat8")
    path = tmp_path / "p.safetensors"
    shutil.copy(src, path)
    calls = []
    real = w.load_state
    monkeypatch.setattr(w, "load_state", lambda p: calls.append(p) or real(p))
    a, _ = w.load_weights(path, "pannet", 4, 2, "landsat8")
    b, _ = w.load_weights(path, "pannet", 4, 2, "landsat8")
    assert len(calls) == 1 and a is not b  # one read, two networks
    for p in a.parameters():
        p.data.zero_()  # one scene's network changed: the next is not
    c, _ = w.load_weights(path, "pannet", 4, 2, "landsat8")
    assert any(float(p.abs().sum()) > 0 for p in c.parameters())
    shutil.copy(src, path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    w.load_weights(path, "pannet", 4, 2, "landsat8")
    assert len(calls) == 2


def test_a_retried_scene_keeps_the_output_its_dead_worker_completed(make_scene, tmp_path):
    """A worker killed after renaming its output into place but before its record came
    back: the retry finds the output with this scene's fingerprint and keeps it (no
    "exists" failure); an output with another fingerprint is still refused."""
    from batch.run import plan_jobs
    from batch.scenes import SceneItem
    from batch.worker import run_scene

    s = make_scene(pan_shape=(96, 80), ratio=4)
    out = str(tmp_path / "o.tif")
    item = SceneItem("a", s.pan, tuple(s.ms), out, {})
    _, job, fp = plan_jobs([item], FuseOptions(method="brovey"), "1")[0]
    payload = {"name": "a", "job": job.to_dict(), "fingerprint": fp}
    first = run_scene(payload)
    assert first["status"] == "ok" and "reused" not in first, first
    mtime = os.stat(out).st_mtime_ns
    again = run_scene(payload)
    assert (again["status"], again.get("reused")) == ("ok", "output of an earlier attempt")
    assert os.stat(out).st_mtime_ns == mtime
    other = run_scene({**payload, "fingerprint": "another"})
    assert other["status"] == "failed" and "--overwrite" in other["error"]
