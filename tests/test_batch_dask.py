"""``pansharp batch`` and ``fuse`` on a real dask.distributed cluster: a ``dask
scheduler`` and two ``dask worker`` processes on 127.0.0.1, started and stopped here.

- 8 scenes, 2 broken: 6 valid COGs, 8 records, the summary and exit code; the rerun
  keeps everything;
- a worker killed (SIGKILL, no nanny to restart it: a machine lost) in the middle of a
  batch: the 6 good scenes still complete, on the other worker, and no partial file is
  left anywhere;
- one scene split across the workers as row tasks: pixel-identical to the local
  ``fuse``, a valid COG.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from batch.run import EXIT_SOME_FAILED
from tests.batch_data import BROKEN, GOOD, make_scenes
from tests.test_batch import check_outputs, leftovers

pytest.importorskip("distributed")
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
DASK = [sys.executable, "-m", "dask"]
START_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_workers(address: str, n: int) -> None:
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(n, timeout=START_TIMEOUT_S)


class Cluster:
    """A scheduler and worker processes of the dask CLI, in their own process groups."""

    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.scheduler = self._start(
            ["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
            "scheduler",
        )
        self.workers = [self.add_worker(k) for k in range(2)]
        _wait_workers(self.address, 2)

    def _start(self, args: list[str], name: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(
            DASK + args, stdout=log, stderr=log, env=env, start_new_session=True, cwd=Path.cwd()
        )
        self.procs.append(proc)
        return proc

    def add_worker(self, k: int) -> subprocess.Popen:
        return self._start(
            ["worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
             "--host", "127.0.0.1", "--name", f"w{k}-{time.monotonic_ns()}"],
            f"worker{k}",
        )  # fmt: skip

    def kill(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    make_scenes(folder)
    return folder


def _batch(scenes: Path, out: Path, address: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pansharp_cli", "batch", str(scenes), "-o", str(out), "-q",
           "--scheduler", address, *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_batch_on_the_cluster_records_and_resumes(cluster, scenes, tmp_path):
    out = tmp_path / "out"
    run = _batch(scenes, out, cluster.address)
    assert run.returncode == EXIT_SOME_FAILED, run.stderr
    assert run.stderr.splitlines()[-1].startswith("pansharp: 6 fused, 0 kept, 2 failed of 8")
    good = [n for n, _ in GOOD]
    check_outputs(out, good)
    records = {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}
    assert len(records) == 8
    assert {n for n, r in records.items() if r["status"] == "failed"} == set(BROKEN)
    summary = json.loads((out / "batch_summary.json").read_text())
    assert (summary["ok"], summary["failed"]) == (6, 2)
    assert len({r["pid"] for r in records.values()}) == 2  # both workers took scenes
    stamps = {n: (out / f"{n}_gsa.tif").stat().st_mtime_ns for n in good}
    again = _batch(scenes, out, cluster.address)
    assert again.stderr.splitlines()[-1].startswith("pansharp: 0 fused, 6 kept, 2 failed")
    (out / "cropA_gsa.tif").unlink()
    third = _batch(scenes, out, cluster.address)
    assert third.stderr.splitlines()[-1].startswith("pansharp: 1 fused, 5 kept, 2 failed")
    assert all((out / f"{n}_gsa.tif").stat().st_mtime_ns == stamps[n] for n in good if n != "cropA")
    check_outputs(out, ["cropA"])
    assert leftovers(out) == []


def test_a_killed_worker_loses_no_scene(cluster, scenes, tmp_path):
    """fusionnet on one thread per worker: seconds per scene, so the kill lands mid-batch."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pansharp_cli", "batch", str(scenes), "-o", str(out), "-q",
           "--scheduler", cluster.address, "-m", "fusionnet", "--sensor", "landsat8"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    records = out / "records"
    while time.monotonic() < deadline and proc.poll() is None:
        if records.is_dir() and any(records.glob("*.json")):
            break
        time.sleep(0.05)
    cluster.kill(cluster.workers[0])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == EXIT_SOME_FAILED, err
    assert err.splitlines()[-1].startswith("pansharp: 6 fused, 0 kept, 2 failed of 8"), err
    check_outputs(out, [n for n, _ in GOOD], "fusionnet")
    assert leftovers(out) == [] and leftovers(scenes) == []


def test_one_scene_split_across_the_workers(cluster, scenes, tmp_path):
    from rio_cogeo.cogeo import cog_validate

    pan, ms = str(scenes / "copy1_pan.tif"), str(scenes / "copy1_ms.tif")
    local, split = tmp_path / "local.tif", tmp_path / "split.tif"
    facts = {}
    for target, extra in ((local, []), (split, ["--scheduler", cluster.address])):
        cmd = [sys.executable, "-m", "pansharp_cli", "fuse", pan, ms, "-m", "mtf-glp-fs",
               "--tile", "16", "-o", str(target), "-q", "--json", *extra]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        facts[target] = json.loads(run.stdout)
    with rasterio.open(local) as a, rasterio.open(split) as b:
        assert np.array_equal(a.read(), b.read())
        assert a.profile == b.profile and a.tags() == b.tags()
    assert cog_validate(str(split))[0]
    info = facts[split]["split"]  # 300 rows in strips of 4 x 16: 5 tasks, on the workers
    assert info["tasks"] == 5 and info["workers"]
    assert "split" not in facts[local]
