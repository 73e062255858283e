"""End-to-end ``pansharp fuse -m fusionnet`` throughput against FusionNet's bare forward pass.

Why this comparison: the blended executor (tiling.blended) should cost little on top of the
network itself - reading and resampling the MS, recomputing the patch overlaps,
blending, converting and writing the COG all overlap the forward pass. One run does:

1. a synthetic uint16 scene (PAN N x N, MS N/4 x N/4 x 4), written strip by strip;
2. random-initialised FusionNet weights (seeded; fine for timing) saved as safetensors;
3. the bare forward pass over N*N pixels: torch, inference mode, all cores, the same
   allocator setting as the engine (``keep_freed_memory``) and inputs of the engine's
   largest CPU patch (``cpu_patch_cap``: 496 x 496 for FusionNet), no I/O, no tiling
   overlap - timed before, between and after the fuse runs;
4. ``pansharp fuse`` in a subprocess; its peak RSS is that child's ``ru_maxrss`` from
   ``os.wait4``; its throughput is taken from the run's own ``seconds`` (fuse_files:
   open, read, infer, write, COG) and also from the wall time (adds interpreter start and
   the torch import).

Forward passes and fuse runs are interleaved and the best of each is kept (other load on a
shared machine only ever slows a run down). Prints both throughputs, their ratio
(target >= 0.85) and the peak RSS.

    python benchmarks/deep_throughput.py [--size 4000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from measure import compile_sources, run_measured

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# pansharp's process settings (huge pages for torch's CPU tensors, see tiling/process.py),
# applied as the pansharp command does, for the bare forward pass too, before anything
# imports torch: the comparison stays fair.
from tiling.process import apply_process_settings  # noqa: E402

apply_process_settings()

OVERLAP = 24  # FusionNet's default overlap in the engine (2 x halo 10 + ramp 4)


def make_scene(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """Synthetic 4-band ratio-4 uint16 scene, never whole in memory (strips of 512 rows)."""
    rng = np.random.default_rng(seed)
    ratio, m = 4, n // 4
    pan_p, ms_p = folder / f"deep_pan_{n}.tif", folder / f"deep_ms_{n}.tif"
    if pan_p.exists() and ms_p.exists():
        return pan_p, ms_p
    kw = dict(driver="GTiff", dtype="uint16", crs="EPSG:32631", tiled=True, compress="deflate")
    fx, fy = rng.uniform(0.002, 0.02, 2)
    pan_t = Affine(0.5, 0, 500000.0, 0, -0.5, 5000000.0)
    with rasterio.open(pan_p, "w", count=1, height=n, width=n, transform=pan_t, **kw) as ds:
        for r0 in range(0, n, 512):
            rows = np.arange(r0, min(n, r0 + 512))[:, None]
            cols = np.arange(n)[None, :]
            base = 800 + 400 * np.sin(fx * cols) * np.cos(fy * rows)
            noise = rng.normal(0, 20, (rows.size, n))
            ds.write((base + noise).astype("uint16")[None], window=((r0, r0 + rows.size), (0, n)))
    ms_t = Affine(2.0, 0, 500000.0, 0, -2.0, 5000000.0)
    with rasterio.open(ms_p, "w", count=4, height=m, width=m, transform=ms_t, **kw) as ds:
        for r0 in range(0, m, 512):
            rows = np.arange(r0, min(m, r0 + 512))[:, None] * ratio + 1.5
            cols = np.arange(m)[None, :] * ratio + 1.5
            base = 800 + 400 * np.sin(fx * cols) * np.cos(fy * rows)
            for b in range(4):
                band = base * (0.8 + 0.1 * b) + rng.normal(0, 10, base.shape)
                ds.write(band.astype("uint16"), b + 1, window=((r0, r0 + base.shape[0]), (0, m)))
    return pan_p, ms_p


def make_weights(folder: Path) -> Path:
    """Seeded random FusionNet weights for 4 bands, ratio 4, the generic sensor."""
    import torch

    from models.deep.card import WeightsCard
    from models.deep.weights import save_weights
    from models.registry import create_model

    torch.manual_seed(0)
    model = create_model("fusionnet", n_bands=4)
    card = WeightsCard(
        model="fusionnet",
        kwargs=dict(model.config),
        sensor="generic",
        band_names=["b1", "b2", "b3", "b4"],
        ratio=4,
        bit_depth=16,
        scale=65535.0,
        training={"note": "random initialisation, for timing only"},
    )
    return save_weights(folder / "fusionnet_bench.safetensors", model, card)


def bare_forward(pixels: int, threads: int) -> float:
    """Seconds for FusionNet's forward pass over ``pixels`` pixels (engine-size inputs)."""
    import torch

    from models.deep.method import cpu_patch_cap
    from models.registry import create_model
    from tiling.allocator import keep_freed_memory
    from tiling.patches import MAX_PATCH

    keep_freed_memory()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("fusionnet", n_bands=4).eval()
    patch = cpu_patch_cap(model, 4, OVERLAP) or MAX_PATCH
    shapes = [(patch, patch)] * (pixels // patch**2)
    rest = pixels - len(shapes) * patch**2
    if rest:
        shapes.append((math.ceil(rest / patch), patch))
    with torch.inference_mode():
        model(torch.rand(1, 4, 64, 64), torch.rand(1, 1, 64, 64))  # warm-up
        ms, pan = torch.rand(1, 4, patch, patch), torch.rand(1, 1, patch, patch)
        t0 = time.perf_counter()
        for h, w in shapes:
            model(ms[:, :, :h, :w], pan[:, :, :h, :w])
        return time.perf_counter() - t0


def run_fuse(cmd: list[str]) -> tuple[float, float, dict]:
    """Run ``cmd``; (wall seconds, peak RSS MB of that command, its --json summary)."""
    m = run_measured(cmd, cwd=ROOT)
    return m.seconds, m.peak_rss_mb, json.loads(m.stdout.strip().splitlines()[-1])


def bench(n: int, folder: Path, threads: int, repeat: int = 2) -> dict:
    pan, ms = make_scene(folder, n)
    weights = make_weights(folder)
    out = folder / "deep_fused.tif"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pansharp_cli", "fuse", str(pan), str(ms)]
    cmd += ["-m", "fusionnet", "--weights", str(weights), "-o", str(out), "--json", "-q"]
    cmd += ["--threads", str(threads)]
    pixels = n * n
    bares, runs = [], []
    for _ in range(repeat):  # interleaved, best of each: other load on the machine only slows
        bares.append(bare_forward(pixels, threads))
        out.unlink(missing_ok=True)
        runs.append(run_fuse(cmd))
    bares.append(bare_forward(pixels, threads))
    bare = min(bares)
    wall = min(r[0] for r in runs)
    rss = max(r[1] for r in runs)
    fuse_s = min(float(r[2]["seconds"]) for r in runs)
    return {
        "size": n,
        "threads": threads,
        "bare_forward_seconds": [round(b, 2) for b in bares],
        "fuse_seconds_all": [float(r[2]["seconds"]) for r in runs],
        "bare_forward_mpx_s": round(pixels / bare / 1e6, 4),
        "fuse_seconds": round(fuse_s, 2),
        "fuse_wall_seconds": round(wall, 2),
        "fuse_mpx_s": round(pixels / fuse_s / 1e6, 4),
        "ratio": round(bare / fuse_s, 3),
        "ratio_wall": round(bare / wall, 3),
        "fuse_peak_rss_mb": round(rss, 1),
        "command": " ".join(cmd),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4000, help="PAN side (default 4000)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--workdir", type=Path, default=None, help="where the scene is cached")
    ap.add_argument("--repeat", type=int, default=2, help="fuse runs (best is kept)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    compile_sources()  # as installed: bytecode caches present (see measure.py)
    folder = args.workdir or Path(tempfile.gettempdir()) / "pansharp-bench"
    folder.mkdir(parents=True, exist_ok=True)
    r = bench(args.size, folder, args.threads, args.repeat)
    print(f"fuse command: {r['command']}")
    print(
        f"{r['size']}x{r['size']} FusionNet, {r['threads']} threads: bare forward "
        f"{r['bare_forward_mpx_s']} Mpx/s ({r['bare_forward_seconds']} s), fuse "
        f"{r['fuse_mpx_s']} Mpx/s ({r['fuse_seconds']} s in fuse_files, {r['fuse_wall_seconds']} s "
        f"wall), ratio {r['ratio']} (wall {r['ratio_wall']}; target >= 0.85), peak RSS "
        f"{r['fuse_peak_rss_mb']} MB",
        flush=True,
    )
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
