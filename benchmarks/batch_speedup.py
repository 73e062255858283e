"""Parallel speed-up of ``pansharp batch`` and of one scene split on a cluster, one run.

Two measurements on synthetic scenes large enough that fusing, not process start,
dominates (:func:`evaluate_scale.make_scene`: PAN n x n, MS n/4 x n/4 x 4, uint16):

1. ``--scenes`` copies of one ``--size`` scene through ``pansharp batch`` with
   ``-j 1 --threads 1`` (the peer: one worker, one thread), ``-j 2 --threads 1`` and a
   two-worker ``--scheduler local:2`` (one thread each, its start included);
   speed-up = peer seconds / seconds.
2. One ``--big`` scene: ``pansharp fuse --threads 2`` (the peer) against
   ``pansharp fuse --scheduler local:2`` (its row ranges as tasks on two one-thread
   workers, the client assembling the COG), pixel equality checked.

Prints one JSON line per measurement. Usage:
``python3 benchmarks/batch_speedup.py [--size 2000] [--scenes 8] [--big 16000] [-m gsa]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate_scale import make_scene  # noqa: E402

from benchmarks.measure import PANSHARP, compile_sources, run_measured  # noqa: E402


def same_pixels(a: Path, b: Path) -> bool:
    """Whether two rasters hold the same pixels, compared strip by strip."""
    with rasterio.open(a) as da, rasterio.open(b) as db:
        if (da.count, da.height, da.width) != (db.count, db.height, db.width):
            return False
        for r0 in range(0, da.height, 1024):
            win = ((r0, min(da.height, r0 + 1024)), (0, da.width))
            if not np.array_equal(da.read(window=win), db.read(window=win), equal_nan=True):
                return False
    return True


def batch_speedup(root: Path, method: str, size: int, count: int) -> dict:
    made = root / "made"
    made.mkdir()
    pan, ms = make_scene(made, size)
    scenes = root / "scenes"
    scenes.mkdir()
    for k in range(count):
        shutil.copy(pan, scenes / f"s{k}_pan.tif")
        shutil.copy(ms, scenes / f"s{k}_ms.tif")
    opts = ["-m", method, "-q"]
    row: dict = {"bench": "batch", "method": method, "size": size, "scenes": count}
    runs = (
        ("jobs1", ["-j", "1", "--threads", "1"]),
        ("jobs2", ["-j", "2", "--threads", "1"]),
        ("local2", ["--scheduler", "local:2"]),
    )
    for label, extra in runs:
        got = run_measured(
            [*PANSHARP, "batch", str(scenes), "-o", str(root / label), *opts, *extra]
        )
        row[f"{label}_s"] = round(got.seconds, 2)
    for label in ("jobs2", "local2"):
        row[f"{label}_speedup"] = round(row["jobs1_s"] / row[f"{label}_s"], 3)
    shutil.rmtree(scenes)
    return row


def split_scene(root: Path, method: str, size: int) -> dict:
    folder = root / "big"
    folder.mkdir()
    pan, ms = make_scene(folder, size)
    outs = {"threads2": root / "big_threads2.tif", "local2": root / "big_local2.tif"}
    row: dict = {"bench": "split", "method": method, "size": size}
    for label, extra in (("threads2", ["--threads", "2"]), ("local2", ["--scheduler", "local:2"])):
        cmd = [*PANSHARP, "fuse", str(pan), str(ms), "-m", method, "-o", str(outs[label])]
        got = run_measured([*cmd, "-q", *extra])
        row[f"{label}_s"] = round(got.seconds, 2)
        row[f"{label}_rss_mb"] = round(got.peak_rss_mb, 1)
    row["local2_vs_threads2"] = round(row["local2_s"] / row["threads2_s"], 3)
    row["identical"] = same_pixels(outs["threads2"], outs["local2"])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=2000, help="PAN side of each batch scene")
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--big", type=int, default=16000, help="PAN side of the split scene (0: skip)")
    ap.add_argument("-m", "--method", default="gsa")
    args = ap.parse_args()
    compile_sources()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        root = Path(tmp)
        print(json.dumps(batch_speedup(root, args.method, args.size, args.scenes)), flush=True)
        if args.big:
            print(json.dumps(split_scene(root, args.method, args.big)), flush=True)


if __name__ == "__main__":
    main()
