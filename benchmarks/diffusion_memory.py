"""Peak memory of the diffusion models against the scene's size, next to FusionNet.

Why: a diffusion model runs its whole sampler per window (models.iterative.windowed), so
its memory is that of one batch of windows plus the engine's strips, and must not grow
with the scene's height; the issue asks for the peak RSS at 2000^2 and 4000^2.

Each model fuses synthetic Landsat-8-like scenes (``deep_models.landsat8_truth``, 4
bands, ratio 2, uint16, its shipped ``<model>_landsat8.safetensors``) of every
``--sizes`` side, each run a subprocess measured by ``measure.run_measured`` (peak RSS
from the child's own ``wait4``). The large scenes run at ``--steps 1`` (default) to stay
affordable on a CPU, which understates the peak: ``--check-size`` adds one scene fused
at both 1 step and the default, whose two peaks say by how much on this machine (the
README gives the measured figures).

``--width W`` makes the scenes W wide and ``--sizes`` their heights: the peak must then
stay flat from one height to the next.

    python benchmarks/diffusion_memory.py [--sizes 2000 4000] [--width W] [--steps 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from deep_models import WEIGHTS, fuse_command, landsat8_truth, measured  # noqa: E402
from measure import compile_sources  # noqa: E402
from scenes import write_pair  # noqa: E402

REFERENCE = "fusionnet"


def run(
    name: str, size: int, folder: Path, threads: int, steps: int | None, width: int | None
) -> dict[str, Any]:
    pan, ms = write_pair(folder, size, landsat8_truth, bands=4, ratio=2, name="l8_", width=width)
    cmd = fuse_command(name, pan, ms, folder / "diffusion_memory.tif", threads)
    if steps is not None:
        cmd += ["--steps", str(steps)]
    m = measured(cmd)
    return {"size": size, "width": width or size, "steps": steps,
            "wall_s": round(m["wall"], 2), "peak_rss_mb": round(m["rss_mb"], 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000])
    ap.add_argument("--steps", type=int, default=1, help="sampler steps at --sizes")
    ap.add_argument(
        "--width", type=int, default=None,
        help="scenes of this width, --sizes their heights (default: square scenes)",
    )  # fmt: skip
    ap.add_argument("--check-size", type=int, default=512, help="0: no steps check")
    ap.add_argument("--models", nargs="+", default=["ksdiff", "nodiff"])
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    compile_sources()
    folder = args.workdir or Path(tempfile.gettempdir()) / "pansharp-bench"
    folder.mkdir(parents=True, exist_ok=True)
    names = [REFERENCE, *args.models]
    missing = [n for n in names if not (WEIGHTS / f"{n}_landsat8.safetensors").is_file()]
    if missing:
        sys.exit(f"no shipped Landsat 8 weights for {', '.join(missing)}")

    rows: list[dict[str, Any]] = []
    for size in args.sizes:
        for name in names:
            steps = None if name == REFERENCE else args.steps
            rows.append({"model": name, **run(name, size, folder, args.threads, steps, args.width)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    check: list[dict[str, Any]] = []
    if args.check_size:
        for name in args.models:
            for steps in (args.steps, None):
                check.append({"model": name, **run(name, args.check_size, folder,
                                                   args.threads, steps, None)})  # fmt: skip
                print(json.dumps(check[-1]), file=sys.stderr, flush=True)

    ref = {r["size"]: r["peak_rss_mb"] for r in rows if r["model"] == REFERENCE}
    print(f"{'model':<10} {'rows':>6} {'cols':>6} {'steps':>6} {'wall s':>8} {'RSS MB':>8} "
          f"{'xFN':>6}")  # fmt: skip
    for r in rows:
        steps = "-" if r["steps"] is None else str(r["steps"])
        x = r["peak_rss_mb"] / ref[r["size"]]
        print(f"{r['model']:<10} {r['size']:>6} {r['width']:>6} {steps:>6} {r['wall_s']:>8.1f} "
              f"{r['peak_rss_mb']:>8.0f} {x:>6.2f}")  # fmt: skip
    for r in check:
        steps = "default" if r["steps"] is None else str(r["steps"])
        print(f"steps check {r['model']} at {r['size']}^2, {steps} steps: "
              f"{r['peak_rss_mb']:.0f} MB, {r['wall_s']:.1f} s")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "steps_check": check}, indent=1))


if __name__ == "__main__":
    main()
