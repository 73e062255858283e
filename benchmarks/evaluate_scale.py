"""Wall time and peak RSS of ``pansharp evaluate`` (4 methods, both scales) vs scene size.

Issue 3: evaluating four methods at both scales on a 4000 x 4000 scene; the peak RSS
must not grow with the scene (every index accumulates over the tile stream, quality.md).
For each size N a synthetic uint16 scene is written strip by strip (PAN N x N, MS
N/4 x N/4 x 4, ratio 4; never whole in memory): a 4-band truth cube of smooth
structure plus texture, PAN = band mean, MS = 4 x 4 block mean. Then

    pansharp evaluate PAN MS -m exp -m gsa -m mtf-glp -m brovey --protocol both

runs as a child process; wall time and that child's own peak RSS (``ru_maxrss`` from
``os.wait4``) are printed, one line per size, with the scores it reported.

    python benchmarks/evaluate_scale.py [--size 2000 --size 4000] [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
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
METHODS = ("exp", "gsa", "mtf-glp", "brovey")


def _waves(seed: int, count: int, scale: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((count, 4))
    for k in range(count):
        fy, fx = rng.uniform(-1, 1, 2) / scale
        out[k] = (fy, fx, rng.uniform(0.2, 1.0), rng.uniform(0, 2 * np.pi))
    return out


def _field(waves: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sum of sinusoids at PAN pixel (rows, cols), normalised to about [-1, 1]."""
    f = np.zeros((rows.size, cols.size))
    for fy, fx, amp, ph in waves:
        f += amp * np.sin(2 * np.pi * (fy * rows[:, None] + fx * cols[None, :]) + ph)
    return f / waves[:, 2].sum()


def make_scene(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """PAN (n x n) and MS (n/4 x n/4 x 4) uint16 (:func:`scenes.write_pair`)."""
    shared = _waves(seed, 10, 40.0)
    texture = [_waves(seed + 1 + b, 8, 6.0 + 3 * b) for b in range(BANDS)]

    def truth(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        base = _field(shared, rows, cols)
        return np.stack(
            [
                1000 + 500 * (0.6 * base + 0.4 * _field(texture[b], rows, cols)) * (1 + 0.1 * b)
                for b in range(BANDS)
            ]
        )

    pan, ms = folder / f"pan_{n}.tif", folder / f"ms_{n}.tif"
    for p in (pan, ms):  # always written afresh, as before
        p.unlink(missing_ok=True)
    return write_pair(folder, n, truth, BANDS, RATIO)


def run(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; (wall seconds, peak RSS of that command alone in MB)."""
    m = run_measured(cmd)
    return m.seconds, m.peak_rss_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, action="append", help="PAN side (repeatable)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--json", default=None, help="write the measurements as JSON")
    ap.add_argument("--keep", default=None, help="folder to keep the scenes in (default: temp)")
    args = ap.parse_args()
    compile_sources()  # as installed: bytecode caches present (see measure.py)
    # SIGTERM unwinds like Ctrl-C, so the scenes folder is removed (the child cleans its own)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sizes = args.size or [2000, 4000]
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pansharp-evalbench-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in sizes:
            t0 = time.perf_counter()
            pan, ms = make_scene(folder, n)
            made = time.perf_counter() - t0
            report = folder / f"report_{n}.json"
            cmd = [sys.executable, "-m", "pansharp_cli", "evaluate", str(pan), str(ms)]
            for m in METHODS:
                cmd += ["-m", m]
            cmd += ["--protocol", "both", "--tile", str(args.tile), "--quiet"]
            cmd += ["--json", str(report)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            wall, rss = run(cmd)
            rep = json.loads(report.read_text())
            scores = {
                f"{r['method']}/{r['scale']}": round(
                    r["q2n"] if r["scale"] == "reduced" else r["hqnr"], 4
                )
                for r in rep["results"]
            }
            row = {
                "size": n,
                "pan_megapixels": n * n / 1e6,
                "methods": list(METHODS),
                "wall_s": round(wall, 1),
                "peak_rss_mb": round(rss, 1),
                "scene_write_s": round(made, 1),
                "threads": args.threads or os.cpu_count(),
                "q2n_reduced_hqnr_full": scores,
            }
            rows.append(row)
            print(
                f"N={n:5d} ({n * n / 1e6:5.1f} Mpx PAN), 4 methods x 2 scales: "
                f"wall {wall:7.1f} s, peak RSS {rss:7.1f} MB   {scores}",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(
            f"scene x{b['pan_megapixels'] / a['pan_megapixels']:.1f}: "
            f"time x{b['wall_s'] / a['wall_s']:.2f}, "
            f"peak RSS x{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
