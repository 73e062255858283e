#!/usr/bin/env python3
"""How much KSDiff's latent depends on the image: its spread across windows.

The kernel modulation can only adapt a window's kernels if the latent differs between
windows. On 9 non-overlapping 64 x 64 windows of a Landsat 7 crop (the top-left 192^2
of the PAN, the MS upsampled bicubically, DN / 255), this prints the standard deviation
of PLFE_1's latent within a window and across the windows (mean over latent entries),
for randomly initialised stage-1 networks (seed 0) of both ``latent_norm`` variants,
before the final normalisation (with ``"batch"`` the standardisation then scales the
spread across windows to one), and for a weights file; for a
stage-2 file also the latent its sampler draws at 10 steps and how far the fused
windows move when the latent is replaced by zeros (DN). The MS stands in for the
reference H in PLFE_1 (the crop has no reference at this scale).

    python3 models/deep/weights/ksdiff_latent_spread.py [--weights FILE] [--crop NAME]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))


def main() -> int:
    import numpy as np
    import rasterio
    import torch

    from models.deep.weights import load_weights
    from models.iterative.windowed import scheduler_for
    from models.registry import create_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(HERE / "ksdiff_landsat7.safetensors"))
    ap.add_argument("--crop", default="scene06")
    args = ap.parse_args()
    data = HERE.parents[3] / "shared" / "data" / "landsat7_crops"
    with rasterio.open(data / f"{args.crop}_pan.tif") as f:
        pan = f.read(1)[:192, :192].astype(np.float32) / 255
    with rasterio.open(data / f"{args.crop}_ms.tif") as f:
        ms = f.read()[:, :96, :96].astype(np.float32) / 255
    up = torch.nn.functional.interpolate(torch.from_numpy(ms)[None], scale_factor=2,
                                         mode="bicubic")[0]  # fmt: skip
    starts = [(r, c) for r in range(0, 192, 64) for c in range(0, 192, 64)]
    ms_w = torch.stack([up[:, r : r + 64, c : c + 64] for r, c in starts])
    pan_w = torch.stack([torch.from_numpy(pan)[None, r : r + 64, c : c + 64] for r, c in starts])

    def spread(z: torch.Tensor) -> str:
        return f"within {z.std().item():.4f}, across windows {z.std(0).mean().item():.4f}"

    with torch.inference_mode():
        for norm in ("layer", "batch"):
            torch.manual_seed(0)
            fresh = create_model("ksdiff", n_bands=ms.shape[0], stage=1, latent_norm=norm)
            plfe = fresh.eval().plfe1
            raw = plfe.raw_latent([pan_w, ms_w], ms_w)
            print(f"random init, latent_norm={norm}, PLFE_1 before its norm:", spread(raw))
            if norm == "layer":
                print("  after the layer norm:", spread(plfe([pan_w, ms_w], ms_w)))
        net, _ = load_weights(args.weights, "ksdiff", ms.shape[0], 2, "landsat7")
        print(
            f"{Path(args.weights).name}, PLFE_1:", spread(net.reference_latent(ms_w, pan_w, ms_w))
        )
        if net.stage == 2:
            sched, _ = scheduler_for(dict(net.config), 10)
            gen = torch.Generator().manual_seed(0)

            def draw(step: int, width: int) -> torch.Tensor:
                return torch.randn(len(starts), width, generator=gen)

            z = net.sample_latent(net.condition(ms_w, pan_w), sched, draw)
            print("sampled latent (10 steps):", spread(z))
            moved = net.regress(ms_w, pan_w, z) - net.regress(ms_w, pan_w, torch.zeros_like(z))
            print(f"fused with the latent vs zeros: max {moved.abs().max().item() * 255:.2f} DN, "
                  f"mean {moved.abs().mean().item() * 255:.2f} DN")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
