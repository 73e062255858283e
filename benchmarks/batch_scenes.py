"""``pansharp batch`` against the shell loop it replaces, on N scenes, in one run.

The peer is what users run today: ``for s in ...; do pansharp fuse ...; done``, one
process per scene (the interpreter, the imports and, for a deep model, torch and the
weights, every time). Against it, on the same N copies of the embedded Landsat 8 sample
scene (``tests/batch_data.py``'s copies), each written to its own folder:

- ``pansharp batch -j 1``: one worker process, the model loaded once;
- ``pansharp batch -j 2``: two workers sharing the cores;
- ``pansharp batch --scheduler local:2``: a dask LocalCluster of two workers (its start
  included).

Prints one JSON line per method: wall seconds of each and the ratios to the loop (< 1:
faster). Usage: ``python3 benchmarks/batch_scenes.py [--scenes 8] [-m gsa -m fusionnet]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import PANSHARP, compile_sources, run_measured  # noqa: E402
from tests.batch_data import make_scenes  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("-m", "--method", action="append", default=None)
    args = ap.parse_args()
    methods = args.method or ["gsa", "fusionnet"]
    compile_sources()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_scenes(root / "made")
        scenes = root / "scenes"
        scenes.mkdir()
        for k in range(args.scenes):
            for role in ("pan", "ms"):
                shutil.copy(root / "made" / f"copy1_{role}.tif", scenes / f"s{k}_{role}.tif")
        for method in methods:
            opts = ["-m", method, "--sensor", "landsat8", "-q"]
            loop = 0.0
            for k in range(args.scenes):
                pan, ms = scenes / f"s{k}_pan.tif", scenes / f"s{k}_ms.tif"
                out = root / f"loop-{method}" / f"s{k}.tif"
                out.parent.mkdir(exist_ok=True)
                loop += run_measured(
                    [*PANSHARP, "fuse", str(pan), str(ms), "-o", str(out), *opts]
                ).seconds
            row = {"method": method, "scenes": args.scenes, "loop_s": round(loop, 2)}
            for label, extra in (("jobs1", ["-j", "1"]), ("jobs2", ["-j", "2"]),
                                 ("local2", ["--scheduler", "local:2"])):  # fmt: skip
                out = root / f"{label}-{method}"
                got = run_measured([*PANSHARP, "batch", str(scenes), "-o", str(out), *opts, *extra])
                row[f"{label}_s"] = round(got.seconds, 2)
                row[f"{label}_vs_loop"] = round(got.seconds / loop, 3)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
