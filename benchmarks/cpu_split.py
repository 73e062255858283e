"""CPU of ``fuse_files(-m brovey)`` split into DEFLATE compression and everything else.

Wall times on a shared machine drift by up to 20 % between runs, and compression (the
same bytes for any version of pansharp) drifts with them, so the share of the rest is
the steadier yardstick for changes outside the codec: ``other / compression`` of two
checkouts run alternately. Compression is the thread time spent in
``deflate.zlib_compress``; the rest is process CPU minus that.

    python benchmarks/cpu_split.py [--size 8000] [--repeat 3] [--source OTHER_CHECKOUT]

``--source`` runs another checkout's library (e.g. a ``git worktree`` of an older
commit) alternately with this one. The scene is the fuse benchmark's (fuse_vs_gdal.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from fuse_vs_gdal import make_scene

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import sys, threading, time
sys.path.insert(0, sys.argv[1])
sys.modules["boto3"] = None  # as the CLI imports the library for local paths
import deflate
spent, lock = [0.0], threading.Lock()
compress = deflate.zlib_compress
def counted(*a, **k):
    t = time.thread_time()
    try:
        return compress(*a, **k)
    finally:
        with lock:
            spent[0] += time.thread_time() - t
deflate.zlib_compress = counted
import tiling.fuse as F
assert F.__file__.startswith(sys.argv[1]), F.__file__
co = {"COMPRESS": "DEFLATE", "PREDICTOR": "2", "BLOCKSIZE": "512", "NUM_THREADS": "ALL_CPUS"}
opts = F.FuseOptions(method="brovey", resampling="cubic", overwrite=True, creation_options=co)
w, c = time.perf_counter(), time.process_time()
F.fuse_files(sys.argv[2], [sys.argv[3]], sys.argv[4], opts)
cpu = time.process_time() - c
print(time.perf_counter() - w, cpu, spent[0])
"""


def run(source: Path, pan: Path, ms: Path, out: Path) -> tuple[float, float, float]:
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, str(source), str(pan), str(ms), str(out)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise SystemExit(res.stderr.strip())
    wall, cpu, zlib = (float(x) for x in res.stdout.split())
    return wall, cpu, zlib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--source", type=Path, default=None, help="another checkout to compare")
    args = ap.parse_args()
    folder = Path(tempfile.gettempdir()) / "pansharp-bench"
    folder.mkdir(parents=True, exist_ok=True)
    pan, ms = make_scene(folder, args.size)
    sources = [ROOT] + ([args.source.resolve()] if args.source else [])
    for _ in range(args.repeat):
        for src in sources:
            wall, cpu, zlib = run(src, pan, ms, folder / "cpu_split.tif")
            print(
                f"{src}: wall {wall:.2f} s, CPU {cpu:.2f} s, compression {zlib:.2f} s, "
                f"other {cpu - zlib:.2f} s, other/compression {(cpu - zlib) / zlib:.3f}"
            )


if __name__ == "__main__":
    main()
