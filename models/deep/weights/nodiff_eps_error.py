#!/usr/bin/env python3
"""How well a NODiff file's denoiser predicts the noise, step by step, on held-out data.

Why: the sampler's first DDIM step turns the predicted noise into
``x0_hat = (x_t - sqrt(1 - a_t) eps_hat) / sqrt(a_t)`` (eq. 7 with DDIM), which
multiplies the noise error by ``sqrt((1 - a_t) / a_t)`` (6.2 at the first step, alpha
bar 0.025): a denoiser whose noise error at the large steps is a few tenths gives a
clipped, useless residual. This prints, for every step ``t`` of ``--steps``, on 64 x 64
windows of a Wald-degraded scene (the MS filtered with the sensor's MTF and decimated,
the PAN resized; the original MS is the reference H, the degraded MS interpolated with
the toolbox EXP is L), the L1 error of the predicted noise, the L1 error of the implied
residual ``x0_hat`` in units of the diffused residual ``X0 = g (H - L)`` next to
``|X0|`` itself (the error of predicting no detail at all), and the share of ``x0_hat``
beyond the sampler's clip. Stage-1 files are conditioned on H, stage-2 files on their
pseudo-SR U.

``--sample-steps N ...`` then runs the whole sampler (DDIM over N steps from pure
noise, the step of ``generate``, with the table's conditioning) and prints the L1 error
of its residual and the residual's standard deviation next to X0's. Why: a denoiser
whose error at each ``t`` is small on noised truth (the table above) can still give a
worse image with more steps if the sampler's path leaves the data it was trained on;
the two tables side by side tell which.

    python3 models/deep/weights/nodiff_eps_error.py --weights FILE --pan PAN --ms MS \
        --sensor landsat7 [--windows 16] [--steps 50 200 ...] [--sample-steps 1 2 5] \
        [--seed 0]
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

    from models.deep.method import card_scale
    from models.deep.weights import load_weights, read_card
    from models.iterative.windowed import scheduler_for
    from physics.degrade import wald_pair
    from physics.resample import interp23
    from physics.sensors import get_sensor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--pan", required=True)
    ap.add_argument("--ms", required=True)
    ap.add_argument("--sensor", required=True)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--steps", type=int, nargs="+", default=[50, 200, 400, 600, 800, 899])
    ap.add_argument("--sample-steps", type=int, nargs="*", default=[])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    header = read_card(args.weights)
    ratio, n = int(header.ratio), int(header.n_bands)
    model, card = load_weights(args.weights, "nodiff", n, ratio, None)
    scale = card_scale(card)
    with rasterio.open(args.pan) as f:
        pan = f.read(1).astype(np.float64)
    with rasterio.open(args.ms) as f:
        ms = f.read(list(range(1, n + 1))).astype(np.float64)
    gains = get_sensor(args.sensor).gains(n)
    pan_lr, ms_lr = wald_pair(pan, ms, gains, ratio)
    h, w = ms_lr.shape[-2:]
    up = interp23(ms_lr, ratio)
    ref = ms[:, : h * ratio, : w * ratio]
    rng = np.random.default_rng(args.seed)
    side = int(model.window)
    ys = rng.integers(0, up.shape[1] - side, args.windows)
    xs = rng.integers(0, up.shape[2] - side, args.windows)

    def cut(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(
            np.stack([a[:, y : y + side, x : x + side] for y, x in zip(ys, xs, strict=True)])
            / scale
        ).float()

    L, H, P = cut(up), cut(ref), cut(pan_lr[None])
    g = float(card.kwargs["residual_gain"])
    clip = float(card.kwargs.get("clip_sample", 8.0))
    x0 = g * (H - L)
    sched, _ = scheduler_for(dict(model.config), 1)
    gen = torch.Generator().manual_seed(args.seed)
    with torch.inference_mode():
        if model.stage == 2:
            u, v = model.pseudo_sr(L, P)
            cond_desc = "pseudo-SR U"
        else:
            u, v = H, None
            cond_desc = "reference H"
        print(f"{Path(args.weights).name}: stage {model.stage}, conditioned on {cond_desc}, "
              f"g {g:g}, clip {clip:g}, {args.windows} windows of {side}^2")  # fmt: skip
        print(f"|X0| mean {x0.abs().mean().item():.3f}, std {x0.std().item():.3f}")
        print(f"{'t':>5} {'alpha_bar':>9} {'|eps err|':>9} {'|x0 err|':>9} {'clipped':>8}")
        for t in args.steps:
            a = float(sched.alpha_bar(int(t)))
            eps = torch.randn(x0.shape, generator=gen)
            x_t = sched.add_noise(x0, eps, int(t))
            steps = torch.full((x0.shape[0],), int(t), dtype=torch.int64)
            eps_hat = model.denoise(x_t, steps, u, v)
            x0_hat = (x_t - (1 - a) ** 0.5 * eps_hat) / a**0.5  # unclipped, unlike split
            clipped = (x0_hat.abs() > clip).float().mean().item()
            print(f"{t:>5} {a:>9.4f} {(eps_hat - eps).abs().mean().item():>9.4f} "
                  f"{(x0_hat - x0).abs().mean().item():>9.4f} {clipped:>8.2%}")  # fmt: skip
        if args.sample_steps:
            print(f"{'steps':>5} {'|x0 err|':>9} {'std':>7} (X0 std {x0.std().item():.3f})")
        for n_steps in args.sample_steps:
            sampler, _ = scheduler_for(dict(model.config), int(n_steps))

            def noise(step: int, channels: int, spatial: bool = True) -> torch.Tensor:
                shape = (x0.shape[0], channels, side, side) if spatial else (x0.shape[0], channels)
                draw = torch.Generator().manual_seed(args.seed * 100003 + int(step))
                return torch.randn(shape, generator=draw)

            def denoise(x: torch.Tensor, t: int, _: object) -> torch.Tensor:
                steps = torch.full((x.shape[0],), int(t), dtype=torch.int64)
                return model.denoise(x, steps, u, v).float()  # generate's step, any stage

            start = sampler.schedule.T
            res = sampler.sample(denoise, noise(start, n), noise_fn=lambda t: noise(t, n))
            print(f"{n_steps:>5} {(res - x0).abs().mean().item():>9.4f} {res.std().item():>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
