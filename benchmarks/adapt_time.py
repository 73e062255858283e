"""Test-time adaptation against inference on one scene, on this machine, in one run.

A synthetic ``--size`` scene (:func:`evaluate_scale.make_scene`: PAN n x n, MS
n/4 x n/4 x 4, uint16; ratio 4, the WorldView-2 preset) is fused by each ``-m`` model:

1. ``fuse --adapt MODE`` with the default budget (half the estimated fusion time), the
   adapted network saved with ``--save-adapted``;
2. the peer: ``fuse --weights SAVED``, the same network without adaptation: inference
   only (the threads are the same in both).

Prints one JSON line per model: adaptation seconds and steps (from the run's JSON),
the adapted run's total, the plain inference run's seconds, and
``adapt_vs_inference`` = adaptation seconds / inference seconds (target <= 0.5).
Usage: ``python3 benchmarks/adapt_time.py [--size 4000] [-m fusionnet] [--mode tailor]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate_scale import make_scene  # noqa: E402

from benchmarks.measure import PANSHARP, compile_sources, run_measured  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=4000)
    ap.add_argument("-m", "--method", action="append", default=None)
    ap.add_argument("--mode", default="tailor")
    args = ap.parse_args()
    compile_sources()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        root = Path(tmp)
        pan, ms = make_scene(root, args.size)
        for method in args.method or ["fusionnet"]:
            saved = root / f"{method}.safetensors"
            base = [*PANSHARP, "fuse", str(pan), str(ms), "-m", method, "--sensor", "worldview2"]
            adapted = run_measured(
                [*base, "-o", str(root / f"{method}_a.tif"), "--json", "-q",
                 "--adapt", args.mode, "--save-adapted", str(saved)]
            )  # fmt: skip
            rep = json.loads(adapted.stdout)["adaptation"]
            plain = run_measured(
                [*base, "-o", str(root / f"{method}_p.tif"), "-q", "--weights", str(saved)]
            )
            row = {
                "method": method,
                "mode": args.mode,
                "size": args.size,
                "adapt_s": rep["total_seconds"],
                "adapt_steps": rep["steps"],
                "adapt_budget_s": rep["time_limit_s"],
                "adapted_run_s": round(adapted.seconds, 2),
                "inference_run_s": round(plain.seconds, 2),
                "adapt_vs_inference": round(rep["total_seconds"] / plain.seconds, 3),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
