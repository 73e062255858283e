"""A run killed outright (SIGKILL) leaves its hidden temporary folder; the next run into
the same folder removes it, and only it: never a live run's folder, never anything that
is not pansharp's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raster.destination import LOCK_NAME, MARKER, TempFolder, remove_stale, temp_folders
from tests.cli import run_cli
from tests.probe import ROOT

CLI = [sys.executable, "-m", "pansharp_cli"]  # this checkout's code, not a PATH one

HOLD = """
import sys
from raster.destination import TempFolder
folder = TempFolder(sys.argv[1])
path = folder.__enter__()
print(path, flush=True)
sys.stdin.read()  # holds the folder until the test closes stdin (or kills it)
folder.__exit__(None, None, None)
"""


def _holder(dest: Path) -> tuple[subprocess.Popen, Path]:
    """A process that owns a temporary folder for ``dest`` until told to stop."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(dest)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip()
    assert line, "the holder did not start"
    return proc, Path(line)


def _decoys(folder: Path) -> list[Path]:
    """Things beside the output that look a bit like temporaries but are not pansharp's."""
    old_style = folder / ".out.tif.k3j4h5g6"  # an older pansharp's folder: no marker
    no_lock = folder / ".x.tif.pansharp-tmp-abcd1234"
    wrong_marker = folder / ".y.tif.pansharp-tmp-efgh5678"
    for d in (old_style, no_lock, wrong_marker):
        d.mkdir()
        (d / "data.bin").write_bytes(b"keep me")
    (wrong_marker / LOCK_NAME).write_text("something else\n")
    plain = folder / ".z.tif.pansharp-tmp-file0000"
    plain.write_text("a file, not a folder")
    return [old_style, no_lock, wrong_marker, plain]


def test_a_sigkilled_runs_folder_is_removed_by_the_next_run(make_scene, tmp_path, capsys):
    big = make_scene(pan_shape=(2048, 2048), ratio=4, bands=4, name="big")
    out = tmp_path / "out.tif"
    cmd = [*CLI, "fuse", big.pan, *big.ms, "-o", str(out), "-m", "exp", "--threads", "1", "-q"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if list(temp_folders(tmp_path)):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "run finished before it could be killed; enlarge the scene"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    stale = list(temp_folders(tmp_path))
    assert len(stale) == 1 and stale[0].name.startswith(".out.tif.pansharp-tmp-"), stale
    decoys = _decoys(tmp_path)

    small = make_scene(pan_shape=(64, 64), name="small")
    second = tmp_path / "second.tif"
    argv = ["fuse", small.pan, *small.ms, "-m", "brovey", "-o", str(second), "-q"]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert not stale[0].exists(), "the killed run's temporary folder is still there"
    assert all(d.exists() for d in decoys), "removed something that is not pansharp's"
    assert not out.exists() and second.exists()


def test_a_live_runs_folder_is_left_alone(make_scene, tmp_path, capsys):
    proc, held = _holder(tmp_path / "out.tif")
    try:
        s = make_scene(pan_shape=(64, 64))
        argv = ["fuse", s.pan, *s.ms, "-m", "brovey", "-o", str(tmp_path / "b.tif"), "-q"]
        code, _, err = run_cli(argv, capsys)
        assert code == 0, err
        assert remove_stale(tmp_path) == []
        assert held.is_dir() and (held / LOCK_NAME).exists(), "a live run's folder was removed"
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert not held.exists()  # its owner removed it on exit


def test_a_killed_holders_folder_is_stale(tmp_path):
    proc, held = _holder(tmp_path / "out.tif")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert held.is_dir()
    assert remove_stale(tmp_path) == [held]
    assert not held.exists()


def test_this_processs_own_folders_are_never_swept(tmp_path):
    with TempFolder(tmp_path / "a.tif") as a, TempFolder(tmp_path / "b.tif") as b:
        assert sorted(temp_folders(tmp_path)) == sorted([a, b])
        assert remove_stale(tmp_path) == []
        assert a.is_dir() and b.is_dir()
    assert list(tmp_path.iterdir()) == []


def _fake_folder(folder: Path, pid: int, start: str) -> Path:
    """A folder as a run leaves it when killed: marker and owner, nobody holding the lock."""
    import socket

    d = folder / ".out.tif.pansharp-tmp-zz9zz9zz"
    d.mkdir()
    (d / LOCK_NAME).write_text(
        f"{MARKER}\npid {pid}\nstart {start}\nhost {socket.gethostname()}\noutput out.tif\n"
    )
    return d


def test_a_reused_pid_does_not_keep_a_stale_folder(tmp_path):
    """The recorded pid runs (it is this test's), but it started at another time: the
    process that owned the folder is gone, and its pid now belongs to someone else."""
    d = _fake_folder(tmp_path, os.getpid(), "1")
    assert remove_stale(tmp_path) == [d]


def test_an_unlocked_folder_of_a_running_owner_is_kept(tmp_path):
    """Belt and braces: the lock is free (lost, e.g. on a network file system) but the
    recorded process runs, same pid and start time: not removed."""
    from raster.destination import _start_time

    start = _start_time(os.getpid())
    if not start:
        pytest.skip("no /proc start times here")
    d = _fake_folder(tmp_path, os.getpid(), start)
    assert remove_stale(tmp_path) == []
    assert d.is_dir()


def _setup_folder(folder: Path, pid: int, start: str, host: str | None = None) -> Path:
    """A folder as a run killed between creating and locking it leaves it: no lock file
    yet, its creator in its name."""
    from raster.destination import _host_hash

    d = folder / f".out.tif.pansharp-new-{pid}-{start}-{host or _host_hash()}-ab12cd34"
    d.mkdir()
    (d / "part.bin").write_bytes(b"x")
    return d


def test_a_folder_killed_during_setup_is_removed_once_its_creator_is_gone(tmp_path):
    """CI found one left by a batch worker stopped mid-setup: such a folder has no lock
    to test, so its name carries its creator, and a dead creator's folder goes."""
    from raster.destination import _start_time

    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    start = _start_time(child.pid)
    if not start:
        child.kill()
        pytest.skip("no /proc start times here")
    d = _setup_folder(tmp_path, child.pid, start)
    (tmp_path / "b").mkdir()
    other_host = _setup_folder(tmp_path / "b", child.pid, "1", host="00000000")
    assert remove_stale(tmp_path) == [] and d.is_dir()  # its creator still runs
    child.communicate(b"")
    assert remove_stale(tmp_path) == [d] and not d.exists()
    assert remove_stale(tmp_path / "b") == [] and other_host.is_dir()  # cannot tell


def test_a_real_setup_folder_names_its_creator(tmp_path, monkeypatch):
    """The folder TempFolder sets up is one the sweep recognises as this process's."""
    from raster import destination as dest

    seen = []
    real_mkdtemp = dest.tempfile.mkdtemp

    def spy(prefix: str, dir: Path) -> str:
        path = real_mkdtemp(prefix=prefix, dir=dir)
        seen.append(Path(path).name)
        return path

    monkeypatch.setattr(dest.tempfile, "mkdtemp", spy)
    with TempFolder(tmp_path / "out.tif"):
        pass
    m = dest._NEW_CANDIDATE.match(seen[0])
    assert m and int(m.group(1)) == os.getpid() and m.group(3) == dest._host_hash()
