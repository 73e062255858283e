"""KSDiff (Jin, Cao & Deng, "Kernel Space Diffusion Model for Efficient Remote Sensing
Pansharpening"): a regression network whose large depthwise kernels are modulated by a
latent that a diffusion model generates from the PAN and MS.

Pieces (:mod:`models.deep.ksdiff_parts`):

- PanNeXt-U, the regressor: a two-level U-Net of ConvNeXt blocks (3x3 stem on
  ``[ms_up, pan]``, one block at full resolution, a 2x2 stride-2 convolution to twice
  the width, ``mid_blocks`` blocks, a 2x2 transposed convolution back, the skip added,
  one block, a 3x3 head to the bands, plus ``ms_up``). Every block's 7x7 depthwise
  kernel is modulated by eq. 3 (sizes: the supplement is not in the corpus; width 32,
  2 middle blocks are pansharp's).
- PLFE_1 (PAN and LRMS guided by the HRMS) gives the latent ``z`` (S = 16 tokens of
  ``latent`` = 32 values) in stage 1; PLFE_2 (the PAN guided by the LRMS) gives the
  condition ``c`` of the latent denoiser in stage 2 and at inference.

Training (:meth:`KSDiff.training_loss`): stage 1 (eq. 4) ``|G - H_1|_1`` with
``H_1 = PanNeXt-U(ms_up, pan; PLFE_1(P, M, G))``. Stage 2 (eq. 9-10) freezes PLFE_1 and
trains PLFE_2, the denoiser and the regressor jointly:
``|z_0 - z_theta(z_t, t, c)|_1 + |G - H_2|_1``, ``z_t`` the latent noised at a random
step, ``H_2`` the regressor driven by the latent that the DDIM sampler (the inference
path, ``train_steps`` steps, noise from the training generator) draws from ``c``.

Inference: DDIM over the latent from ``z_T ~ N(0, I)`` (eq. 8, x0 prediction, cosine
T = 1000), then the regressor. What the latent means on tiles: it describes the patch
it was computed from (the paper's 64 x 64 training patches). pansharp computes it on
64 x 64 windows fixed to the scene's grid (:mod:`models.iterative.windowed`), 56 pixels
apart, each with its own latent noise keyed by the window's absolute origin and the
seed; neighbouring windows' results are blended over 8-pixel ``sin^2`` ramps, which
sum to one. So a pixel's value depends on the scene, seed and step count only, never
on ``--tile``; a window's own latent changes smoothly into its neighbour's across the
ramp instead of switching at a border, and the ramp also hides the zero padding at
the window's edge. Why 8 pixels (``window_ramp``, a sampler setting: training never
uses it): each pixel is computed ``(64 / 56)^2 = 1.31`` times instead of ``(64 /
48)^2 = 1.78`` with 16-pixel ramps, and the held-out Landsat 7 crops score the same
(Q2n 0.8953 against 0.8954 at 5 steps; 4-pixel ramps 0.8949;
``models/deep/weights/README.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.deep.common import conv
from models.deep.ksdiff_parts import PLFE, ConvNeXtBlock, LatentDenoiser, channels_last
from models.deep.staged import StagedDiffusionNet


class KSDiff(StagedDiffusionNet):
    """KSDiff; ``forward(ms_up, pan, reference=None)`` is stage 1's regression (the
    reference's latent); inference goes through :meth:`generate`."""

    name = "ksdiff"
    prediction = "x0"
    #: the regressor's last convolution, from the decoder's features to the bands'
    #: residual (test-time adaptation's tailor, models.deep.tailor)
    split_points = ("head",)

    def __init__(
        self,
        n_bands: int,
        width: int = 32,
        mid_blocks: int = 2,
        kernel: int = 7,
        latent: int = 32,
        tokens_side: int = 4,
        latent_norm: str = "batch",
        ranks: tuple[int, int, int, int] | list[int] = (1, 4, 2, 2),
        unit_factors: bool = True,
        stage: int = 2,
        window: int = 64,
        window_ramp: int = 8,
        train_steps: int = 4,
        T: int = 1000,
        schedule: str = "cosine",
        prediction: str = "x0",
        default_steps: int | None = None,
    ) -> None:
        if int(window) % 4:
            raise ValueError(f"ksdiff: window must be a multiple of 4, got {window}")
        ranks = tuple(int(r) for r in ranks)
        super().__init__(
            n_bands,
            width=int(width),
            mid_blocks=int(mid_blocks),
            kernel=int(kernel),
            latent=int(latent),
            tokens_side=int(tokens_side),
            latent_norm=str(latent_norm),
            ranks=list(ranks),
            unit_factors=bool(unit_factors),
            stage=stage,
            window=window,
            window_ramp=window_ramp,
            train_steps=int(train_steps),
            T=T,
            schedule=schedule,
            prediction=prediction,
            default_steps=default_steps,
        )
        b, c, lat = n_bands, int(width), int(latent)
        blk = (kernel, lat, ranks, bool(unit_factors))
        self.stem = conv(b + 1, c, 3)
        self.enc = ConvNeXtBlock(c, *blk)
        self.down = nn.Conv2d(c, 2 * c, 2, stride=2)
        self.mid = nn.ModuleList(ConvNeXtBlock(2 * c, *blk) for _ in range(mid_blocks))
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.dec = ConvNeXtBlock(c, *blk)
        self.head = conv(c, b, 3)
        self.plfe1 = PLFE([1, b], b, c, lat, tokens_side=tokens_side, norm=latent_norm)
        if self.stage == 2:
            for p in self.plfe1.parameters():
                p.requires_grad_(False)  # eq. 9-10: the stage-1 encoder is the target
            self.plfe1.eval()  # its running statistics too (see train)
            self.plfe2 = PLFE([1], b, c, lat, tokens_side=tokens_side, norm=latent_norm)
            self.denoiser = LatentDenoiser(lat, int(tokens_side) ** 2)

    def train(self, mode: bool = True) -> KSDiff:
        """Stage 2 keeps PLFE_1 in evaluation mode: it is frozen, running statistics
        included, so the latent it gives (the denoiser's target) does not move."""
        super().train(mode)
        if self.stage == 2:
            self.plfe1.eval()
        return self

    def regress(self, ms_up: torch.Tensor, pan: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """PanNeXt-U with its kernels modulated by the latent ``z`` (N, S, C_z)."""
        h, w = ms_up.shape[-2:]
        if h % 2 or w % 2:
            raise ValueError(f"ksdiff: patch sides must be even, got {h} x {w}")
        x0 = self.enc(F.gelu(self.stem(channels_last(torch.cat([ms_up, pan], dim=1)))), z)
        x = self.down(x0)
        for block in self.mid:
            x = block(x, z)
        x = self.dec(self.up(x) + x0, z)
        return ms_up + self.head(x).contiguous()

    def reference_latent(
        self, ms_up: torch.Tensor, pan: torch.Tensor, reference: torch.Tensor
    ) -> torch.Tensor:
        return self.plfe1([pan, ms_up], reference)

    def forward(
        self, ms_up: torch.Tensor, pan: torch.Tensor, reference: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.check_inputs(ms_up, pan)
        if reference is None:
            raise ValueError(
                "ksdiff's forward is stage 1 (needs the reference); fuse uses generate"
            )
        return self.regress(ms_up, pan, self.reference_latent(ms_up, pan, reference))

    def condition(self, ms_up: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        """``c = PLFE_2(P; M)``, the denoiser's condition (N, S, C_z)."""
        if self.stage != 2:
            raise ValueError(
                "ksdiff stage-1 weights need the reference's latent; train stage 2 "
                "(pansharp train -m ksdiff --stage 2 --init FILE) to fuse"
            )
        return self.plfe2([pan], ms_up)

    def sample_latent(self, c: torch.Tensor, scheduler: Any, noise: Any) -> torch.Tensor:
        """DDIM over the latent from ``z_T = noise(T)`` (eq. 8)."""
        n = c.shape[0]
        shape = (n, *c.shape[1:])
        width = int(np.prod(c.shape[1:]))

        def draw(step: int) -> torch.Tensor:
            return noise(step, width).reshape(shape).to(c.dtype)

        def denoise(z: torch.Tensor, t: int, _: Any) -> torch.Tensor:
            steps = torch.full((n,), int(t), dtype=torch.int64, device=c.device)
            return self.denoiser(z, steps, c).float()

        return scheduler.sample(denoise, draw(scheduler.schedule.T), noise_fn=draw)

    def generate(
        self, ms_up: torch.Tensor, pan: torch.Tensor, scheduler: Any, noise: Any
    ) -> torch.Tensor:
        """The fused windows: the latent sampled from PLFE_2's condition, then the
        regressor (``noise(step, channels, spatial)`` is the windowed sampler's)."""
        self.check_inputs(ms_up, pan)
        c = self.condition(ms_up, pan)
        z = self.sample_latent(c, scheduler, lambda s, w: noise(s, w, False))
        return self.regress(ms_up, pan, z)

    def training_loss(
        self,
        ms_up: torch.Tensor,
        pan: torch.Tensor,
        target: torch.Tensor,
        rng: np.random.Generator,
        scheduler: Any,
    ) -> torch.Tensor:
        """Eq. 4 (stage 1) or eq. 10 (stage 2, see the module docstring); random steps
        and noise from ``rng`` (saved in checkpoints)."""
        if self.stage == 1:
            return F.l1_loss(
                self.regress(ms_up, pan, self.reference_latent(ms_up, pan, target)), target
            )
        with torch.no_grad():
            z0 = self.reference_latent(ms_up, pan, target)
        n = z0.shape[0]
        t = torch.from_numpy(rng.integers(0, scheduler.schedule.T, n)).to(z0.device)
        eps = torch.from_numpy(rng.standard_normal(tuple(z0.shape), dtype=np.float32))
        z_t = scheduler.add_noise(z0, eps.to(z0.device), t)
        c = self.condition(ms_up, pan)
        diff = F.l1_loss(self.denoiser(z_t, t, c), z0)
        from models.iterative.ddim import DDIMScheduler

        chain = DDIMScheduler(scheduler.schedule, int(self.config["train_steps"]), prediction="x0")
        z = torch.from_numpy(rng.standard_normal(tuple(z0.shape), dtype=np.float32)).to(z0.device)
        for step in chain.timesteps:  # the inference path, with gradients
            steps = torch.full((n,), int(step), dtype=torch.int64, device=z0.device)
            z = chain.step(self.denoiser(z, steps, c), step, z)
        return diff + F.l1_loss(self.regress(ms_up, pan, z), target)

    @staticmethod
    def is_prior(name: str) -> bool:
        """True for the tensors stage 2 keeps frozen: PLFE_1, whose latent it learns to
        generate (the regressor trains on, jointly, eq. 10)."""
        return name.startswith("plfe1.")
