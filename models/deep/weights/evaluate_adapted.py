#!/usr/bin/env python3
"""Score deep models on the WorldView-2 tiles: unadapted, and with each ``--adapt`` mode.

For each tile of ``../shared/data/spacenet6_wv2_tiles`` (4 bands, ratio 4.0002) runs

    pansharp evaluate PAN MS --sensor worldview2 --protocol both -m CLASSICAL... --json F
    pansharp evaluate PAN MS --sensor worldview2 --protocol both -m M \
        --weights M=models/deep/weights/M_landsat-r4.safetensors          # unadapted
    pansharp evaluate PAN MS --sensor worldview2 --protocol both -m M --adapt MODE \
        --adapt-steps N                                                     # adapted

(the adaptation runs on each protocol's own inputs: the degraded pair at reduced
resolution, the scene at full resolution) and prints a Markdown table of the means over
the tiles: Q2n, SAM, ERGAS (reduced), D_lambda, D_S, HQNR (full), with the adaptation's
seconds. ``--steps`` fixes the adaptation steps, so the table does not depend on the
machine's speed (the default budget of ``fuse --adapt`` is time-based).
Usage: ``python3 models/deep/weights/evaluate_adapted.py [--models fusionnet,...]
[--modes tailor,swift,full] [--steps 60] [--classical mtf-glp-fs,...]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
TILES = ROOT.parent / "shared" / "data" / "spacenet6_wv2_tiles"
COLUMNS = [("q2n", "reduced", 4), ("sam", "reduced", 3), ("ergas", "reduced", 3),
           ("d_lambda", "full", 4), ("d_s", "full", 4), ("hqnr", "full", 4)]  # fmt: skip
CLASSICAL = "exp,gsa,bdsd-pc,pracs,mtf-glp-fs,mtf-glp-hpm,awlp"
DEEP = "pnn,pannet,dicnn,fusionnet,lagnet,otpnet,premix-b,premix-h"


def run(tile: int, args: list[str], out: Path) -> tuple[list[dict], float]:
    cmd = [sys.executable, "-m", "pansharp_cli", "evaluate", str(TILES / f"pan{tile}.tif"),
           str(TILES / f"ms{tile}.tif"), "--sensor", "worldview2", "--protocol", "both", "-q",
           "--json", str(out), *args]  # fmt: skip
    print("$", " ".join(cmd[1:]), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    # a failed method (BDSD-PC needs more MS pixels than the reduced tiles have) is an
    # error entry of the report, and evaluate exits non-zero: read the report anyway
    # a refusal before any work (weights trained on another sensor) writes no report: the
    # method cannot run unadapted, its row says so
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    if not out.is_file():
        return [], time.perf_counter() - t0
    return json.loads(out.read_text())["results"], time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEEP)
    ap.add_argument("--modes", default="tailor,swift,full")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--classical", default=CLASSICAL)
    ap.add_argument("--tiles", default="1,2,3")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pansharp_adapt_eval_"))
    rows: dict[str, dict[tuple[str, str], list[float]]] = {}
    seconds: dict[str, list[float]] = {}

    def add(label: str, results: list[dict], spent: float | None = None) -> None:
        if not results:
            rows.setdefault(f"{label} (refused: weights of another sensor)", {})
            return
        for r in results:
            if "error" in r:
                print(f"warning: {label}: {r['error']}", file=sys.stderr)
                continue
            key = label or r["method"]
            for k, scale, _ in COLUMNS:
                if r["scale"] == scale and k in r:
                    rows.setdefault(key, {}).setdefault((k, scale), []).append(r[k])
        if spent is not None:
            seconds.setdefault(label, []).append(spent)

    tiles = [int(t) for t in args.tiles.split(",")]
    for t in tiles:
        ms = [x for c in args.classical.split(",") for x in ("-m", c)]
        res, _ = run(t, ms, tmp / f"classical{t}.json")
        add("", res)
        for m in args.models.split(","):
            w = HERE / f"{m}_landsat-r4.safetensors"
            res, spent = run(t, ["-m", m, "--weights", f"{m}={w}"], tmp / f"{m}{t}.json")
            add(f"{m} (landsat-r4, unadapted)", res, spent)
            for mode in args.modes.split(","):
                extra = ["-m", m, "--adapt", mode, "--adapt-steps", str(args.steps)]
                res, spent = run(t, extra, tmp / f"{m}-{mode}{t}.json")
                add(f"{m} --adapt {mode}", res, spent)
    print(f"Mean over WorldView-2 tiles {args.tiles} (`--sensor worldview2`); adapted with "
          f"`--adapt-steps {args.steps}` per protocol.\n")  # fmt: skip
    print("| method | Q2n | SAM | ERGAS | D_lambda | D_S | HQNR | evaluate s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, vals in rows.items():
        cells = []
        for k, scale, d in COLUMNS:
            v = vals.get((k, scale), [])
            cells.append(f"{sum(v) / len(v):.{d}f}" if len(v) == len(tiles) else "-")
        s = seconds.get(label) if vals else None
        cells.append(f"{sum(s) / len(s):.1f}" if s else "")
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
