"""Windows per forward pass of the windowed diffusion sampler, on this machine, in one run.

The peer is the chunk size itself: each diffusion model (randomly initialised, 6 bands,
its card's default window) runs its whole sampler (``generate``, ``--steps`` DDIM steps)
on ``--windows`` random windows, cut into forwards of each ``--chunks`` size, round
robin for ``--repeat`` rounds; the best time of each size is reported, and its ratio to
the chunk the sampler picks on this device
(:func:`models.iterative.windowed.windows_per_forward`). Why it matters: on the CPU the
maps of a few windows stay in the processor's cache, so many small forwards beat one
large one (the value of ``WINDOW_CPU_BUDGET_BYTES``).

Usage: ``python3 benchmarks/window_chunks.py [--models ksdiff,nodiff] [--windows 128]``
Prints one JSON line per model and chunk size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import models.deep  # noqa: E402, F401  (registers the networks; imports windowed in order)
from models.iterative.ddim import DDIMScheduler  # noqa: E402
from models.iterative.schedules import make_schedule  # noqa: E402
from models.iterative.windowed import windows_per_forward  # noqa: E402
from models.registry import create_model  # noqa: E402

#: constructor settings that make a random network runnable (NODiff's gain is set by
#: training from the data; 1 here)
SETTINGS = {"nodiff": {"residual_gain": 1.0}}


def sampler_seconds(
    net: torch.nn.Module, scheduler: DDIMScheduler, windows: int, chunk: int, device: torch.device
) -> float:
    win, bands = int(net.window), int(net.config["n_bands"])
    g = torch.Generator().manual_seed(0)
    ms = torch.rand(chunk, bands, win, win, generator=g).to(device)
    pan = torch.rand(chunk, 1, win, win, generator=g).to(device)

    def noise(step: int, width: int, spatial: bool = False) -> torch.Tensor:
        shape = (chunk, width, win, win) if spatial else (chunk, width)
        return torch.randn(shape, generator=torch.Generator().manual_seed(step)).to(device)

    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(max(1, windows // chunk)):
            net.generate(ms, pan, scheduler, noise)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="ksdiff,nodiff")
    ap.add_argument("--windows", type=int, default=128)
    ap.add_argument("--chunks", default="4,8,16,32,64")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    for name in args.models.split(","):
        net = create_model(name, n_bands=6, **SETTINGS.get(name, {})).eval().to(device)
        sched = DDIMScheduler(
            make_schedule(str(net.config["schedule"]), int(net.config["T"])),
            args.steps,
            prediction=str(net.config["prediction"]),
        )
        chosen = windows_per_forward(int(net.window), int(net.config.get("width", 32)), device.type)
        sizes = sorted({*(int(c) for c in args.chunks.split(",")), chosen})
        best = {c: float("inf") for c in sizes}
        sampler_seconds(net, sched, sizes[0], sizes[0], device)  # warm-up
        for _ in range(args.repeat):
            for c in sizes:
                best[c] = min(best[c], sampler_seconds(net, sched, args.windows, c, device))
        for c in sizes:
            done = max(1, args.windows // c) * c
            print(
                json.dumps(
                    {
                        "model": name,
                        "device": str(device),
                        "window": int(net.window),
                        "steps": args.steps,
                        "chunk": c,
                        "chosen": c == chosen,
                        "s_per_window": round(best[c] / done, 5),
                        "vs_chosen": round(
                            (best[c] / done)
                            / (best[chosen] / (max(1, args.windows // chosen) * chosen)),
                            3,
                        ),
                    }
                )
            )


if __name__ == "__main__":
    main()
