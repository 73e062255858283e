"""Wall time and peak RSS of one command, as the benchmarks report them.

Why a launcher: a child's ``ru_maxrss`` counts its RSS before ``exec`` too, i.e. the
memory it shares with the process that forked it. Forked straight from a benchmark that
has just generated a scene or run a model, a tool's peak looks ~0.5 GB larger than it is
(measured on the 16000^2 fuse benchmark). So every timed command is started by a tiny
Python launcher (~10 MB) that waits for it with ``os.wait4`` and reports its rusage.
"""

from __future__ import annotations

import compileall
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_LAUNCHER = r"""
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


ROOT = Path(__file__).resolve().parents[1]
#: the command line of pansharp in this interpreter
PANSHARP = [sys.executable, "-m", "pansharp_cli"]
PACKAGES = (
    "errors.py",
    "models",
    "pansharp_cli",
    "physics",
    "quality",
    "raster",
    "tiling",
    "batch",
    "pansharp",
)


def compile_sources() -> None:
    """Write pansharp's bytecode caches before timing it, as an installed tool has them.

    ``pip install`` compiles the packages it installs, and any run writes the caches of
    an editable install, unless PYTHONDONTWRITEBYTECODE is set, as on this project's
    machine: there every run compiled pansharp's modules again, 0.2 s of its start-up
    (0.60-0.77 s of imports, 0.39-0.51 s with caches). The peer's Python modules (Debian's
    python3-gdal) come with their caches.
    """
    for name in PACKAGES:
        path = ROOT / name
        if path.is_dir():
            compileall.compile_dir(path, quiet=1)
        elif path.exists():
            compileall.compile_file(path, quiet=1)


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    stdout: str


def run_measured(cmd: list[str], cwd: str | Path | None = None) -> Measured:
    """Run ``cmd``; wall seconds, the command's own peak RSS in MB, and its stdout.

    A failing command ends the benchmark with its stderr.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rusage") as rusage:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, rusage.name, *cmd],
            cwd=cwd,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        code, maxrss_kb = (int(x) for x in Path(rusage.name).read_text().split())
    if proc.returncode != 0 or code != 0:
        raise SystemExit(f"command failed ({code}): {' '.join(cmd)}\n{proc.stderr.strip()}")
    return Measured(wall, maxrss_kb / 1024.0, proc.stdout)
