#!/usr/bin/env python3
"""Quality of the diffusion models against their sampler step count (issue 13's table).

On every held-out Landsat 7 crop of ``landsat7_test.csv`` (run from anywhere):

    pansharp evaluate PAN MS --ratio 2 --sensor landsat7 --protocol reduced \
        -m fusionnet -m pannet -m mtf-glp-fs --weights ...        # the references, once
    pansharp evaluate PAN MS ... -m nodiff --steps N --weights nodiff=...   # each N, model

and prints a Markdown table of Q2n, SAM and ERGAS averaged over the crops, with the
wall-clock seconds of each diffusion run (all crops; degradation and scoring included,
the same for every N) so that quality and cost read side by side. The references are
FusionNet, PanNet and MTF-GLP-FS (the best classical method on these crops by Q2n in
README.md's table). ``--json FILE`` keeps the means for the README; ``--weights
MODEL=FILE`` scores a file that is not (yet) shipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from evaluate_shipped import HERE, evaluate_crop, mean_rows, read_crops

KEYS = [("q2n", "Q2n", 4), ("sam", "SAM (deg)", 3), ("ergas", "ERGAS", 3)]
REFERENCES = ["fusionnet", "pannet", "mtf-glp-fs"]
STEPS = [1, 2, 5, 10, 20, 50]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default=str(HERE / "landsat7_test.csv"))
    ap.add_argument("--models", nargs="+", default=["ksdiff", "nodiff"])
    ap.add_argument("--steps", nargs="+", type=int, default=STEPS)
    ap.add_argument("--out", help="folder for the per-crop JSON reports")
    ap.add_argument("--json", help="write the means here")
    ap.add_argument(
        "--weights", action="append", default=[], metavar="MODEL=FILE",
        help="score this file instead of the shipped <model>_landsat7.safetensors",
    )  # fmt: skip
    ap.add_argument("--threads", type=int, help="pansharp evaluate --threads")
    ap.add_argument("--no-references", action="store_true", help="score only --models")
    args = ap.parse_args()
    given = dict(w.split("=", 1) for w in args.weights)
    threads = ["--threads", str(args.threads)] if args.threads else []

    crops = read_crops(Path(args.manifest))
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="pansharp_steps_"))
    out.mkdir(parents=True, exist_ok=True)
    keys = [k for k, _, _ in KEYS]

    def weights(ms: list[str]) -> dict[str, Path]:
        w = {m: Path(given[m]) if m in given else HERE / f"{m}_landsat7.safetensors" for m in ms}
        return {m: p for m, p in w.items() if p.is_file()}

    rows: dict[str, dict] = {}
    ref_w = weights(REFERENCES)
    per: dict[str, list[dict]] = {}
    for name, pan, ms in [] if args.no_references else crops:
        report = out / f"{name}_refs.json"
        for r in evaluate_crop(pan, ms, REFERENCES, ref_w, report, threads):
            per.setdefault(r["method"], []).append(r)
    for m in per:
        rows[m] = {**mean_rows(per[m], keys), "steps": None, "seconds": None}
    for model in args.models:
        w = weights([model])
        if not w:
            print(f"warning: no {model}_landsat7.safetensors, {model} not scored", file=sys.stderr)
            continue
        for n in args.steps:
            t0 = time.perf_counter()
            got = []
            for name, pan, ms in crops:
                report = out / f"{name}_{model}_{n}.json"
                got += evaluate_crop(pan, ms, [model], w, report, ["--steps", str(n), *threads])
            assert all(r["steps"] == n for r in got), "the sampler ran another step count"
            rows[f"{model} @ {n}"] = {
                **mean_rows(got, keys),
                "steps": n,
                "seconds": time.perf_counter() - t0,
            }

    print(
        f"Mean over {len(crops)} held-out Landsat 7 crops ({', '.join(c[0] for c in crops)}), "
        "reduced resolution (Wald), ratio 2, seed 0; seconds: all crops, one process each.\n"
    )
    print("| method | steps | " + " | ".join(h for _, h, _ in KEYS) + " | seconds |")
    print("|---|---:|" + "---:|" * (len(KEYS) + 1))
    for m, v in rows.items():
        cells = [f"{v[k]:.{d}f}" for k, _, d in KEYS]
        steps = "" if v["steps"] is None else str(v["steps"])
        secs = "" if v["seconds"] is None else f"{v['seconds']:.0f}"
        print(f"| {m.split(' @ ')[0]} | {steps} | " + " | ".join(cells) + f" | {secs} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
