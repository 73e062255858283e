#!/usr/bin/env python3
"""Score the shipped Landsat 7 weights on the held-out crops (reduced resolution).

Runs, per crop of ``landsat7_test.csv`` (run from anywhere):

    pansharp evaluate PAN MS --ratio 2 --sensor landsat7 --protocol reduced \
        -m brovey -m ihs ... -m awlp -m pnn ... \
        --weights pnn=models/deep/weights/pnn_landsat7.safetensors ... --json FILE

with every registered method (the registry's order: numpy methods, then networks), and
prints a Markdown table of each index averaged over the crops (Q2n, Q, SAM, ERGAS, SCC,
PSNR, SSIM). Networks whose weights file is missing are skipped, with a warning.
Per-crop JSON reports go to ``--out`` (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
INDEXES = [
    ("q2n", "Q2n", 4),
    ("q", "Q", 4),
    ("sam", "SAM (deg)", 3),
    ("ergas", "ERGAS", 3),
    ("scc", "SCC", 4),
    ("psnr", "PSNR (dB)", 2),
    ("ssim", "SSIM", 4),
]
HIGHER = {"q2n", "q", "scc", "psnr", "ssim"}


def read_crops(manifest: Path) -> list[tuple[str, Path, Path]]:
    """(name, PAN, MS) of every crop of a manifest (paths relative to it)."""
    manifest = manifest.resolve()
    with manifest.open(newline="") as f:
        return [
            (
                r["name"],
                (manifest.parent / r["pan"]).resolve(),
                (manifest.parent / r["ms"]).resolve(),
            )
            for r in csv.DictReader(f)
        ]


def evaluate_crop(
    pan: Path,
    ms: Path,
    methods: list[str],
    weights: dict[str, Path],
    report: Path,
    extra: list[str] | None = None,
) -> list[dict]:
    """``pansharp evaluate`` at reduced resolution on one Landsat 7 crop; its rows."""
    cmd = ["pansharp", "evaluate", str(pan), str(ms), "--ratio", "2", "--sensor", "landsat7",
           "--protocol", "reduced", "-q", "--json", str(report)]  # fmt: skip
    for m in methods:
        cmd += ["-m", m]
    for m, w in weights.items():
        cmd += ["--weights", f"{m}={w}"]
    cmd += extra or []
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads(report.read_text())["results"]


def mean_rows(rows: list[dict], keys: list[str]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default=str(HERE / "landsat7_test.csv"))
    ap.add_argument("--out", help="folder for the per-crop JSON reports")
    ap.add_argument("--threads", type=int, help="passed to pansharp evaluate")
    args = ap.parse_args()

    crops = read_crops(Path(args.manifest))
    sys.path.insert(0, str(ROOT))
    from models.registry import get_entry, model_names

    names = model_names()
    weighted = [m for m in names if "weights" in get_entry(m).info.run_options]
    missing = [m for m in weighted if not (HERE / f"{m}_landsat7.safetensors").is_file()]
    for m in missing:
        print(f"warning: no {m}_landsat7.safetensors, {m} not scored", file=sys.stderr)
    methods = [m for m in names if m not in missing]
    deep = [m for m in weighted if m not in missing]
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="pansharp_eval_"))
    out.mkdir(parents=True, exist_ok=True)

    per_method: dict[str, list[dict]] = {}
    weights = {m: HERE / f"{m}_landsat7.safetensors" for m in deep}
    extra = ["--threads", str(args.threads)] if args.threads else []
    for name, pan, ms in crops:
        for r in evaluate_crop(pan, ms, methods, weights, out / f"{name}.json", extra):
            per_method.setdefault(r["method"], []).append(r)

    n = len(crops)
    means = {}
    for m in methods:
        rows = per_method.get(m, [])
        if len(rows) != n:
            print(f"warning: {m} scored on {len(rows)}/{n} crops", file=sys.stderr)
        if rows:
            means[m] = mean_rows(rows, [k for k, _, _ in INDEXES])
    best = {
        k: (max if k in HIGHER else min)(means, key=lambda m: means[m][k]) for k, _, _ in INDEXES
    }

    print(
        f"Mean over {n} held-out Landsat 7 crops ({', '.join(c[0] for c in crops)}), "
        "reduced resolution (Wald), ratio 2; **bold** = best per column.\n"
    )
    print("| method | " + " | ".join(h for _, h, _ in INDEXES) + " |")
    print("|---|" + "---:|" * len(INDEXES))
    for m, v in means.items():
        cells = []
        for k, _, d in INDEXES:
            s = f"{v[k]:.{d}f}"
            cells.append(f"**{s}**" if best[k] == m else s)
        kind = " (deep)" if m in deep else ""
        print(f"| {m}{kind} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
