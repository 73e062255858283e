"""Peak RSS of ``pansharp train`` vs scene size: the streaming sampler's memory follows the batch.

The random-window sampler (models/deep/sampler.py) reads and degrades one window (plus
the degradation's halo) per patch, so training on a 6000 x 6000 PAN must take about the
memory of training on a 3000 x 3000 one; the whole-scene code it replaced held every
degraded scene in float32/float64 arrays. For each size N a synthetic uint16 scene is
written strip by strip (PAN N x N, MS N/4 x N/4 x 4, ratio 4, seeded: smooth structure
plus noise; never whole in memory), then

    pansharp train PAN:MS -m pnn --sensor quickbird --bit-depth 11 --steps S
        --batch-size B --patch P --device cpu -o W.safetensors --quiet --json

runs as a child process; its wall time and its own peak RSS (``ru_maxrss`` from
``os.wait4``, benchmarks/measure.py) are printed per size, then the ratio
RSS(largest) / RSS(smallest). ``--old DIR`` also runs a checkout of the previous code
(e.g. /work/before) on the same scenes, with ``PYTHONPATH=DIR`` and DIR as the working
directory.

    python benchmarks/train_memory.py [--size 3000 --size 6000] [--steps 4] [--old DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import compile_sources, run_measured
from scenes import write_pair

RATIO = 4
BANDS = 4


def make_scene(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """PAN (n x n) and MS (n/4 x n/4 x 4) uint16 (:func:`scenes.write_pair`).

    Truth cube per strip: a shared sinusoidal structure, a per-band gain and seeded
    Gaussian noise.
    """
    rng = np.random.default_rng(seed)
    fy, fx = rng.uniform(0.002, 0.02, 2)

    def truth(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        base = 800 + 400 * np.sin(fx * cols[None, :]) * np.cos(fy * rows[:, None])
        noise = [rng.normal(0, 15, base.shape) for _ in range(BANDS)]
        return np.stack([base * (0.8 + 0.1 * b) + noise[b] for b in range(BANDS)])

    return write_pair(folder, n, truth, BANDS, RATIO)


def train_cmd(pan: Path, ms: Path, out: Path, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "pansharp_cli", "train", f"{pan}:{ms}",
        "-m", args.model, "--sensor", "quickbird", "--bit-depth", "11",
        "--steps", str(args.steps), "--batch-size", str(args.batch_size),
        "--patch", str(args.patch), "--device", "cpu", "--checkpoint-every", "1000",
        "-o", str(out), "--overwrite", "--quiet", "--json",
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, action="append", help="PAN side (repeatable)")
    ap.add_argument("--model", default="pnn")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--old", default=None, help="also run the code checked out in DIR")
    ap.add_argument("--json", default=None, help="write the measurements as JSON")
    ap.add_argument("--keep", default=None, help="folder to keep the scenes in (default: temp)")
    args = ap.parse_args()
    compile_sources()  # as installed: bytecode caches present (see measure.py)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sizes = args.size or [3000, 6000]
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pansharp-trainmem-"))
    folder.mkdir(parents=True, exist_ok=True)
    codes = [("new", None)] + ([("old", str(Path(args.old).resolve()))] if args.old else [])
    rows = []
    try:
        for n in sizes:
            t0 = time.perf_counter()
            pan, ms = make_scene(folder, n)
            made = time.perf_counter() - t0
            for label, root in codes:
                cmd = train_cmd(pan, ms, folder / f"w_{label}_{n}.safetensors", args)
                if root is not None:  # the old checkout, first on the path, run from there
                    cmd = ["env", f"PYTHONPATH={root}", *cmd]
                m = run_measured(cmd, cwd=root)
                summary = json.loads(m.stdout.strip().splitlines()[-1])
                row = {
                    "code": label,
                    "size": n,
                    "pan_megapixels": n * n / 1e6,
                    "model": args.model,
                    "steps": summary["steps"],
                    "batch_size": args.batch_size,
                    "patch": args.patch,
                    "wall_s": round(m.seconds, 1),
                    "peak_rss_mb": round(m.peak_rss_mb, 1),
                    "scene_write_s": round(made, 1),
                    "val_l1": (summary.get("validation") or {}).get("val_l1"),
                }
                rows.append(row)
                print(
                    f"{label:3s} N={n:5d} ({n * n / 1e6:5.1f} Mpx PAN), {args.model} "
                    f"{summary['steps']} steps x {args.batch_size} patches of {args.patch}: "
                    f"wall {m.seconds:6.1f} s, peak RSS {m.peak_rss_mb:7.1f} MB",
                    flush=True,
                )
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    for label, _ in codes:
        mine = [r for r in rows if r["code"] == label]
        if len(mine) > 1:
            a, b = mine[0], mine[-1]
            print(
                f"{label}: scene x{b['pan_megapixels'] / a['pan_megapixels']:.1f} -> "
                f"peak RSS x{b['peak_rss_mb'] / a['peak_rss_mb']:.2f} "
                f"({a['peak_rss_mb']:.0f} -> {b['peak_rss_mb']:.0f} MB)"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
