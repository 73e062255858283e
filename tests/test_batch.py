"""``pansharp batch`` on local worker processes: records, summary, exit codes, resume,
fault isolation, interruption (the dask runs: tests/test_batch_dask.py)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from batch.fingerprint import TAG
from batch.run import EXIT_SOME_FAILED
from tests.batch_data import BROKEN, GOOD, make_scenes
from tests.cli import run_cli
from tiling.fuse import FuseOptions, fuse_files

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    make_scenes(folder)
    return folder


def leftovers(folder: Path) -> list[str]:
    """Anything hidden or temporary a run may have left (partial outputs live there)."""
    return sorted(str(p) for p in folder.rglob("*") if p.name.startswith(".") or "tmp" in p.name)


def check_outputs(out: Path, names: list[str], method: str = "gsa") -> None:
    from rio_cogeo.cogeo import cog_validate

    for name in names:
        path = out / f"{name}_{method}.tif"
        valid, errors, _ = cog_validate(str(path))
        assert valid, (path, errors)
        with rasterio.open(path) as ds:
            assert ds.tags()[TAG] and ds.crs is not None and ds.overviews(1) or ds.width < 512


def test_batch_records_summary_resume(scenes, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["batch", str(scenes), "-o", str(out), "-j", "2", "-q"], capsys)
    assert code == EXIT_SOME_FAILED
    assert err.splitlines()[-1].startswith("pansharp: 6 fused, 0 kept, 2 failed of 8 scenes")
    good = [n for n, _ in GOOD]
    check_outputs(out, good)
    for name in BROKEN:
        assert not (out / f"{name}_gsa.tif").exists()
    records = {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}
    assert sorted(records) == sorted(good + BROKEN)
    assert {n for n, r in records.items() if r["status"] == "failed"} == set(BROKEN)
    assert (
        records["truncated"]["exit_code"] == 3
        and "truncated_ms.tif" in records["truncated"]["error"]
    )
    assert (
        records["nooverlap"]["exit_code"] == 4 and "do not overlap" in records["nooverlap"]["error"]
    )
    ok = records["cropB"]
    assert ok["summary"]["width"] == 700 and ok["summary"]["height"] == 256
    assert ok["method"] == "gsa" and ok["seconds"] > 0 and ok["fingerprint"]
    summary = json.loads((out / "batch_summary.json").read_text())
    assert (summary["scenes"], summary["ok"], summary["failed"], summary["skipped"]) == (8, 6, 2, 0)
    with (out / "batch_summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and sum(r["status"] == "failed" for r in rows) == 2
    state = json.loads((out / "batch_state.json").read_text())["scenes"]
    assert state["copy1"]["fingerprint"] == records["copy1"]["fingerprint"]
    # the batch output is what fuse writes
    direct = tmp_path / "direct.tif"
    fuse_files(str(scenes / "cropB_pan.tif"), [str(scenes / "cropB_ms.tif")], str(direct),
               FuseOptions(method="gsa"))  # fmt: skip
    with rasterio.open(direct) as a, rasterio.open(out / "cropB_gsa.tif") as b:
        assert np.array_equal(a.read(), b.read()) and a.transform == b.transform

    # a rerun does nothing new: the 6 outputs are kept untouched
    stamps = {n: (out / f"{n}_gsa.tif").stat().st_mtime_ns for n in good}
    code, _, err = run_cli(["batch", str(scenes), "-o", str(out), "-q"], capsys)
    assert code == EXIT_SOME_FAILED
    assert err.splitlines()[-1].startswith("pansharp: 0 fused, 6 kept, 2 failed of 8 scenes")
    assert stamps == {n: (out / f"{n}_gsa.tif").stat().st_mtime_ns for n in good}

    # one output deleted: only that one is redone
    (out / "copy2_gsa.tif").unlink()
    code, _, err = run_cli(["batch", str(scenes), "-o", str(out), "-q", "--json"], capsys)
    assert err.splitlines()[-1].startswith("pansharp: 1 fused, 5 kept, 2 failed")
    assert all((out / f"{n}_gsa.tif").stat().st_mtime_ns == stamps[n] for n in good if n != "copy2")
    # other options: a new fingerprint, so every scene is redone (its old output replaced)
    code, _, err = run_cli(["batch", str(scenes), "-o", str(out), "-q", "--dtype", "float32"],
                           capsys)  # fmt: skip
    assert err.splitlines()[-1].startswith("pansharp: 6 fused, 0 kept, 2 failed")
    with rasterio.open(out / "copy1_gsa.tif") as ds:
        assert ds.dtypes[0] == "float32"
    assert leftovers(out) == []


def test_all_good_exits_zero_and_force_redoes(scenes, tmp_path, capsys):
    out = tmp_path / "out"
    pans = str(scenes / "copy*_pan.tif")
    code, _, err = run_cli(["batch", pans, "-o", str(out), "-q", "--name", "{name}.tif"], capsys)
    assert code == 0 and err.splitlines()[-1].startswith("pansharp: 3 fused, 0 kept, 0 failed")
    assert sorted(p.name for p in out.glob("*.tif")) == ["copy1.tif", "copy2.tif", "copy3.tif"]
    code, _, err = run_cli(["batch", pans, "-o", str(out), "-q", "--name", "{name}.tif",
                            "--force"], capsys)  # fmt: skip
    assert code == 0 and err.splitlines()[-1].startswith("pansharp: 3 fused, 0 kept")


def test_manifest_rows_bring_their_own_options(scenes, tmp_path, capsys):
    manifest = tmp_path / "scenes.csv"
    manifest.write_text(
        "pan,ms,out,method,dtype\n"
        f"{scenes}/copy1_pan.tif,{scenes}/copy1_ms.tif,a.tif,brovey,\n"
        f"{scenes}/cropA_pan.tif,{scenes}/cropA_ms.tif,,,float32\n"
    )
    out = tmp_path / "out"
    code, _, err = run_cli(["batch", str(manifest), "-o", str(out), "-q", "-m", "gsa"], capsys)
    assert code == 0, err
    with rasterio.open(out / "a.tif") as ds:
        assert ds.tags()["PANSHARP_METHOD"] == "brovey"
    with rasterio.open(out / "cropA_gsa.tif") as ds:
        assert ds.tags()["PANSHARP_METHOD"] == "gsa" and ds.dtypes[0] == "float32"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("pan,ms,colour\na_pan.tif,a_ms.tif,red\n", "unknown column(s) colour"),
        ("pan,ms,tile\na_pan.tif,a_ms.tif,big\n", "column tile: 'big' is not a int"),
        ("pan\na_pan.tif\n", "needs a header with pan and ms"),
    ],
)
def test_bad_manifest_is_one_line(tmp_path, capsys, text, needle):
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    code, _, err = run_cli(["batch", str(manifest), "-o", str(tmp_path / "o")], capsys)
    from tests.cli import one_line_error

    one_line_error(code, err, needle)
    assert not (tmp_path / "o").exists()


def test_a_foreign_file_at_the_destination_is_not_replaced(scenes, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "copy1_gsa.tif").write_bytes(b"not ours")
    code, _, err = run_cli(["batch", str(scenes / "copy1_pan.tif"), "-o", str(out), "-q"], capsys)
    assert code == EXIT_SOME_FAILED and "--overwrite" in err
    assert (out / "copy1_gsa.tif").read_bytes() == b"not ours"


def _record_count(out: Path) -> int:
    return len(list((out / "records").glob("*.json"))) if (out / "records").is_dir() else 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_batch_leaves_no_partial_output_and_resumes(scenes, tmp_path, sig):
    """SIGINT (Ctrl-C: to the whole process group) or SIGTERM (to the batch process
    alone) mid-run (fusionnet on one thread: seconds per scene): exit 130, only complete
    outputs, no temporary file; the rerun finishes the rest."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pansharp_cli", "batch", str(scenes), "-o", str(out), "-q",
           "-m", "fusionnet", "--sensor", "landsat8", "--threads", "1", "-j", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while _record_count(out) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C: the whole process group
    else:
        proc.send_signal(signal.SIGTERM)  # as a scheduler's kill: the batch process only
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    done = {p.stem for p in (out / "records").glob("*.json")}
    for path in out.glob("*.tif"):  # every file there is a complete, fingerprinted output
        with rasterio.open(path) as ds:
            assert ds.tags()[TAG]
    assert leftovers(out) == []
    assert len(done) < 8
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == EXIT_SOME_FAILED, rerun.stderr
    last = rerun.stderr.splitlines()[-1]
    kept = int(last.split(" kept")[0].split()[-1])
    assert kept == len({n for n, _ in GOOD} & done) and "2 failed of 8" in last
    assert len(list(out.glob("*.tif"))) == 6 and leftovers(out) == []


def test_a_killed_local_worker_loses_no_scene(scenes, tmp_path):
    """SIGKILL to one of the two worker processes mid-batch: the pool is restarted and
    the scenes it held are run again; all 6 good scenes complete, nothing partial."""
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pansharp_cli", "batch", str(scenes), "-o", str(out), "-q",
           "-m", "fusionnet", "--sensor", "landsat8", "--threads", "1", "-j", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while _record_count(out) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    workers = [
        c for c in psutil.Process(proc.pid).children()
        if "resource_tracker" not in " ".join(c.cmdline())
    ]  # fmt: skip
    assert workers, "no worker process found"
    workers[0].kill()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == EXIT_SOME_FAILED, err
    assert err.splitlines()[-1].startswith("pansharp: 6 fused, 0 kept, 2 failed of 8"), err
    check_outputs(out, [n for n, _ in GOOD], "fusionnet")
    assert leftovers(out) == []


@pytest.mark.parametrize(
    "address, needle",
    [("local:0", "local:N with N >= 1"), ("tcp://127.0.0.1:9", "no dask scheduler answers")],
)
def test_a_bad_scheduler_is_one_line(scenes, tmp_path, capsys, monkeypatch, address, needle):
    import batch.cluster
    from tests.cli import one_line_error

    monkeypatch.setattr(batch.cluster, "CONNECT_TIMEOUT_S", 2)
    args = ["batch", str(scenes / "copy1_pan.tif"), "-o", str(tmp_path / "o"), "-q"]
    code, _, err = run_cli([*args, "--scheduler", address], capsys)
    one_line_error(code, err, "--scheduler", needle)
    assert not list((tmp_path / "o").glob("*.tif"))
