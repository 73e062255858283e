"""NODiff (Hou, Ran, Chen, Chen, Cong, Li & Deng, "NODiff: Neural Operator Diffusion for
Multispectral Image Fusion", AAAI 2026): residual diffusion with a Fourier neural
operator (FNO) denoiser, trained in two stages.

What is diffused: ``X0 = g (H - L)`` (eq. 1-3), the detail of the reference ``H`` over
the interpolated MS ``L``, times ``residual_gain`` ``g`` (pansharp's: the normalised
detail's standard deviation differs by sensor and container, 0.0050 on Landsat 8 in
16 bits, 0.022 on Landsat 7 in 8 bits, 64 Wald patches each; ``g`` is set from the
first training batch so that ``X0`` has a standard deviation of 0.5, the scale of
images in [-1, 1] that diffusion's unit noise was designed for; the card records it).
Sampling clamps ``x0_hat`` to ``[-clip_sample, clip_sample]`` (8 = 16 standard
deviations; the largest Landsat 8 detail in those patches was 19, so a few extreme
pixels may clip), see :meth:`models.iterative.ddim.DDIMScheduler.split`, and starts
from pure noise at the last step with ``alpha_bar >= start_alpha_bar`` (0.025: step
899 of the cosine T = 1000, :func:`models.iterative.ddim.first_timestep`); training
draws ``t`` up to that step only.

The denoiser ``eps_theta(X_t, cond, t)`` (eq. 4-6):

- ``F^0 = Conv3x3([X_t, cond])`` with ``cond = H`` in stage I (eq. 4) and the pseudo-SR
  ``U`` in stage II (eq. 10);
- ``m`` FNO layers, ``F^l = GELU(F^-1(P_K(F(Z^l))) . R + W Z^l + b_l(t))`` (eq. 5):
  the global spectral operator keeps ``modes`` x ``modes`` Fourier modes in both the
  positive and the negative row band (``P_K``), multiplies them by the learned complex
  weights ``R`` and transforms back; ``W`` is a 1x1 convolution; ``b_l(t)`` is a
  per-channel time bias from a sinusoidal embedding through an MLP (the paper's
  denoiser takes ``t`` without saying where; this is DDPM's way, Ho et al. 2020);
- ``eps_hat = Conv1x1(F^m) + sqrt(1 - a_t) X_t`` (eq. 6, plus the skip when
  ``noise_skip``, the default). The skip is what the noise would be if the residual were
  zero: the network learns only the rest, as in the preconditioning of Karras et al.
  (NeurIPS 2022, eq. 7, ``c_skip``). Without it (the first Landsat 8 file) the prior
  must carry each band's white noise through eight GELU layers; on Landsat 7 (6 bands)
  three output bands stayed dead (noise error 0.80 = E|eps|, the error of predicting
  zero, at every step, after 1758 steps; ``nodiff_eps_error.py``). Defaults from the
  paper's ablations (Fig. 6, 8): 8 layers, 12 modes; ``width`` (the paper gives none)
  24: the retained complex weights are ``8 x 2 x width^2 x 12^2`` values (2.65 M at
  24, 4.7 M at 32), the bulk of the weights file, while the 1x1 paths cost ``width^2``
  per pixel and layer.

Stage II (eq. 9-14; ``stage=2``) freezes all of the above and adds:

- the auxiliary predictor ``V = Phi(S(P, L))``, ``U = Conv(V) + L`` (eq. 9): ``S`` the
  Sobel x and y gradients of the PAN and of every band of L, ``Phi`` four 3x3 conv
  layers with GELU;
- the conditional detail guidance adapter before every FNO layer,
  ``Z^l = F^{l-1} + phi_l([V, F^{l-1}])`` (eq. 11), ``phi_l`` = 1x1 conv, GELU, 3x3
  conv, its last conv zero-initialised so stage II starts from stage I's function;
- time-aware LoRA on the retained spectral weights, ``R = R_base + alpha A D_t B``
  with ``D_t = diag(1 + tanh(MLP(Embed(t))))`` (eq. 12-14), rank ``lora_rank``, ``B``
  zero-initialised (Hu et al. 2022), so again the start equals stage I.

Training (:meth:`NODiff.training_loss`): L1 between the drawn and the predicted noise
(eq. 8 and 15), plus, in stage II, ``aux_weight`` x L1(U, H): pansharp's addition that
makes the pseudo-SR converge in a CPU budget (``aux_weight=0`` is the paper's eq. 15).

Why windows at inference (:mod:`models.iterative.windowed`): the spectral operator mixes
every pixel of its input with every other, so a patch's result depends on where the
patch ends. The sampler therefore runs the whole reverse process on ``window`` x
``window`` windows fixed on the scene's absolute grid (the training patch size, so the
operator sees inputs of the size it learned; the 12 retained modes of a 64-pixel
window carry structure down to about 5 pixels, the 1x1 paths and the 3x3 lift the
rest), ``window - window_ramp`` apart, and blends them over ``sin^2`` ramps that sum
to one: every output pixel is then a function of the scene alone, whatever ``--tile``,
and a window's border (where the FFT's periodic wrap distorts most) fades into its
neighbour. 16-pixel ramps on 64-pixel windows compute each pixel 1.78 times instead
of the Hann window's 4 (``window_ramp = 32``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.deep.common import conv
from models.deep.staged import StagedDiffusionNet
from models.iterative.ddim import first_timestep
from models.iterative.schedules import make_schedule

TARGET_STD = 0.5  # of the diffused residual X0 = g (H - L)


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(N, dim): ``[sin(t f_k), cos(t f_k)]``, ``f_k = 10000^(-k / (dim/2))`` (Vaswani et
    al. 2017, sec. 3.5, the DDPM denoiser's timestep embedding)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    arg = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


def sobel(x: torch.Tensor) -> torch.Tensor:
    """(N, 2C, H, W): the x and y Sobel gradients of every channel, replicate-padded."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
    k = torch.stack([kx, kx.t()])[:, None].to(x.dtype)  # (2, 1, 3, 3)
    c = x.shape[1]
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, k.repeat(c, 1, 1, 1), groups=c)


def _real_block(re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
    """(K, 2A, 2B): the real form ``[[re, im], [-im, re]]`` of complex (K, A, B) matrices,
    so that ``[x_re, x_im] @ block = [Re(x W), Im(x W)]``."""
    return torch.cat([torch.cat([re, im], dim=2), torch.cat([-im, re], dim=2)], dim=1)


class SpectralConv(nn.Module):
    """The global spectral operator of eq. 5, with the Ta-LoRA increment of eq. 12-14.

    ``weight`` (2, C, C, m, m, 2): the complex weights ``R_base`` (real and imaginary
    parts last) of the positive (index 0) and negative (1) row band of the retained
    modes. ``lora_a`` (r, C) real and ``lora_b`` (2, C, r, m, m, 2) complex are the
    low-rank factors A and B; ``gates`` (N, r) the diagonal of ``D_t``.
    """

    def __init__(self, channels: int, modes: int, rank: int = 0, alpha: float = 1.0) -> None:
        super().__init__()
        self.modes, self.rank, self.alpha = int(modes), int(rank), float(alpha)
        scale = 1.0 / channels
        self.weight = nn.Parameter(scale * torch.randn(2, channels, channels, modes, modes, 2))
        if self.rank > 0:
            self.lora_a = nn.Parameter(torch.randn(rank, channels) / math.sqrt(channels))
            self.lora_b = nn.Parameter(torch.zeros(2, channels, rank, modes, modes, 2))

    def forward(self, x: torch.Tensor, gates: torch.Tensor | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        xf = torch.fft.rfft2(x.float(), norm="ortho")  # (N, C, H, W//2 + 1)
        mx, my = min(self.modes, h // 2), min(self.modes, w // 2 + 1)
        k = 2 * mx * my
        # the retained modes as one batch of K = 2 mx my rows of (N, C) values, mixed by
        # each mode's (C_in, C_out) weights in real arithmetic: [re, im] [[Wr, Wi],
        # [-Wi, Wr]] = [re Wr - im Wi, re Wi + im Wr] (complex einsum and bmm ran
        # element by element on the CPU, several times slower)
        part = torch.cat([xf[:, :, :mx, :my], xf[:, :, h - mx :, :my]], dim=2)
        rows = part.permute(2, 3, 0, 1).reshape(k, n, c)
        rows = torch.cat([rows.real, rows.imag], dim=2)  # (K, N, 2C)
        wt = self.weight.float()[:, :, :, :mx, :my]  # (2, I, O, mx, my, 2)
        wk = torch.cat([wt[0], wt[1]], dim=2).permute(2, 3, 0, 1, 4).reshape(k, c, c, 2)
        mixed = torch.bmm(rows, _real_block(wk[..., 0], wk[..., 1]))  # (K, N, 2 C_out)
        if self.rank > 0 and gates is not None:
            lb = self.lora_b.float()[:, :, :, :mx, :my]  # (2, O, r, mx, my, 2)
            bk = torch.cat([lb[0], lb[1]], dim=2).permute(2, 3, 1, 0, 4)
            bk = bk.reshape(k, self.rank, c, 2)
            a = self.lora_a.float().t()  # (C_in, r), real: applies to re and im alike
            proj = torch.cat([rows[..., :c] @ a, rows[..., c:] @ a], dim=2)  # (K, N, 2r)
            proj = proj * torch.cat([gates, gates], dim=1).float()[None]  # D_t
            mixed = mixed + self.alpha * torch.bmm(proj, _real_block(bk[..., 0], bk[..., 1]))
        mixed = torch.complex(mixed[..., :c], mixed[..., c:])
        mixed = mixed.reshape(2 * mx, my, n, c).permute(2, 3, 0, 1)
        out = torch.zeros(n, c, h, w // 2 + 1, dtype=xf.dtype, device=x.device)
        out[:, :, :mx, :my] = mixed[:, :, :mx]
        out[:, :, h - mx :, :my] = mixed[:, :, mx:]
        return torch.fft.irfft2(out, s=(h, w), norm="ortho").to(x.dtype)


class FNOLayer(nn.Module):
    """Eq. 5: ``GELU(spectral(Z) + W Z + b(t))``."""

    def __init__(self, channels: int, modes: int, rank: int) -> None:
        super().__init__()
        self.spectral = SpectralConv(channels, modes, rank)
        self.linear = nn.Conv2d(channels, channels, 1)

    def forward(
        self, z: torch.Tensor, bias: torch.Tensor, gates: torch.Tensor | None
    ) -> torch.Tensor:
        return F.gelu(self.spectral(z, gates) + self.linear(z) + bias)


class Adapter(nn.Module):
    """Eq. 11's ``phi``: ``[V, F] -> G``, the last conv zero-initialised."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mix = nn.Conv2d(2 * channels, channels, 1)
        self.out = conv(channels, channels, 3)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.mix(torch.cat([v, f], dim=1))))


class NODiff(StagedDiffusionNet):
    """The NODiff denoiser; ``forward(x_t, t, ms_up, pan, reference=None) -> eps_hat``.

    ``stage=1``: conditioned on ``reference`` (H, required); ``stage=2``: on the
    pseudo-SR U from the auxiliary predictor (``reference`` unused). ``T``,
    ``schedule`` and ``prediction`` fix the diffusion the network was trained for (the
    card records them); ``window`` is the inference window (module docstring).
    """

    name = "nodiff"
    prediction = "epsilon"
    #: the 1x1 map of the last FNO layer's features to the predicted noise, run at every
    #: sampler step (test-time adaptation's tailor, models.deep.tailor)
    split_points = ("project",)

    def __init__(
        self,
        n_bands: int,
        width: int = 24,
        layers: int = 8,
        modes: int = 12,
        stage: int = 2,
        lora_rank: int = 4,
        residual_gain: float = 0.0,
        clip_sample: float = 8.0,
        start_alpha_bar: float | None = 0.025,
        aux_weight: float = 1.0,
        noise_skip: bool = True,
        window: int = 64,
        window_ramp: int = 16,
        T: int = 1000,
        schedule: str = "cosine",
        prediction: str = "epsilon",
        default_steps: int | None = None,
    ) -> None:
        if int(window) < 2 * int(modes) or int(window) % 2:
            raise ValueError(f"nodiff: window must be even and >= 2 x modes, got {window}")
        super().__init__(
            n_bands,
            width=int(width),
            layers=int(layers),
            modes=int(modes),
            stage=stage,
            lora_rank=int(lora_rank),
            residual_gain=float(residual_gain),
            clip_sample=float(clip_sample),
            start_alpha_bar=None if start_alpha_bar is None else float(start_alpha_bar),
            aux_weight=float(aux_weight),
            noise_skip=bool(noise_skip),
            window=window,
            window_ramp=window_ramp,
            T=T,
            schedule=schedule,
            prediction=prediction,
            default_steps=default_steps,
        )
        c, b = int(width), n_bands
        self.width = c
        self.lift = conv(2 * b, c, 3)
        self.time_mlp = nn.Sequential(nn.Linear(c, c), nn.SiLU(), nn.Linear(c, c * layers))
        rank = int(lora_rank) if self.stage == 2 else 0
        self.layers = nn.ModuleList(FNOLayer(c, int(modes), rank) for _ in range(layers))
        self.project = nn.Conv2d(c, b, 1)
        abar = make_schedule(str(schedule), int(T)).alphas_cumprod
        # sqrt(1 - alpha_bar_t), the skip's gain per step (not a weight: not saved)
        self.register_buffer(
            "skip_gain", torch.tensor(abar, dtype=torch.float32).neg().add(1).sqrt(),
            persistent=False,
        )  # fmt: skip
        if self.stage == 2:
            for p in self.parameters():
                p.requires_grad_(False)  # the stage-I prior is frozen (eq. 9-15)
            self.aux = nn.Sequential(
                conv(2 + 2 * b, c, 3), nn.GELU(), conv(c, c, 3), nn.GELU(),
                conv(c, c, 3), nn.GELU(), conv(c, c, 3),
            )  # fmt: skip
            self.to_u = conv(c, b, 3)
            self.adapters = nn.ModuleList(Adapter(c) for _ in range(layers))
            self.gate_mlp = nn.Sequential(nn.Linear(c, c), nn.SiLU(), nn.Linear(c, rank * layers))
            for layer in self.layers:
                layer.spectral.lora_a.requires_grad_(True)
                layer.spectral.lora_b.requires_grad_(True)

    def pseudo_sr(
        self, ms_up: torch.Tensor, pan: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 9: ``(U, V)``."""
        v = self.aux(torch.cat([sobel(pan), sobel(ms_up)], dim=1))
        return self.to_u(v) + ms_up, v

    def denoise(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, v: torch.Tensor | None
    ) -> torch.Tensor:
        """Eq. 4/10, 5, 11 and 6 for a given conditioning image and detail features."""
        emb = time_embedding(t, self.width)
        biases = self.time_mlp(emb).view(len(t), len(self.layers), self.width, 1, 1)
        gates = None
        if self.stage == 2:
            rank = int(self.config["lora_rank"])
            gates = 1.0 + torch.tanh(self.gate_mlp(emb)).view(len(t), len(self.layers), rank)
        f = self.lift(torch.cat([x_t, cond], dim=1))
        for k, layer in enumerate(self.layers):
            z = f if v is None else f + self.adapters[k](v, f)
            f = layer(z, biases[:, k], None if gates is None else gates[:, k])
        out = self.project(f)
        if self.config.get("noise_skip"):
            out = out + self.skip_gain[t].to(out.dtype).view(-1, 1, 1, 1) * x_t
        return out

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        ms_up: torch.Tensor,
        pan: torch.Tensor,
        reference: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self.check_inputs(ms_up, pan)
        if self.stage == 1:
            if reference is None:
                raise ValueError("nodiff stage 1 is conditioned on the reference H")
            return self.denoise(x_t, t, reference, None)
        u, v = self.pseudo_sr(ms_up, pan)
        return self.denoise(x_t, t, u, v)

    # -- the two phases' hooks ---------------------------------------------------------
    def condition(self, ms_up: torch.Tensor, pan: torch.Tensor) -> Any:
        """What every sampler step reuses: (U, V), computed once per window."""
        if self.stage != 2:
            raise ValueError(
                "nodiff stage-1 weights are a texture prior conditioned on the reference; "
                "train stage 2 (pansharp train -m nodiff --stage 2 --init FILE) to fuse"
            )
        return self.pseudo_sr(ms_up, pan)

    def step_output(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """The denoiser's output at step ``t`` given :meth:`condition`'s result."""
        u, v = cond
        return self.denoise(x_t, t, u, v)

    def to_image(self, ms_up: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """``L + X0 / g``: the fused image from a sampled residual."""
        gain = float(self.config["residual_gain"])
        if gain <= 0:
            raise ValueError("nodiff: residual_gain is unset (untrained weights)")
        return ms_up + x0 / gain

    def training_loss(
        self,
        ms_up: torch.Tensor,
        pan: torch.Tensor,
        target: torch.Tensor,
        rng: np.random.Generator,
        scheduler: Any,
    ) -> torch.Tensor:
        """Eq. 8 (stage I) or 15 (stage II): ``|eps - eps_theta(x_t, ., t)|_1`` with
        ``x_t = sqrt(a_t) X0 + sqrt(1 - a_t) eps``, ``t`` uniform over the T steps; in
        stage II plus ``aux_weight |U - H|_1``. ``t`` and ``eps`` come from ``rng`` (the
        sampler's generator, saved in checkpoints, so a resumed run draws the same)."""
        if float(self.config["residual_gain"]) <= 0:  # first batch of a new prior
            std = float((target - ms_up).float().std())
            self.config["residual_gain"] = float(f"{TARGET_STD / max(std, 1e-6):.3g}")
        x0 = float(self.config["residual_gain"]) * (target - ms_up)
        n = x0.shape[0]
        top = first_timestep(scheduler.schedule, self.config.get("start_alpha_bar")) + 1
        t = torch.from_numpy(rng.integers(0, top, n)).to(x0.device)
        eps = torch.from_numpy(rng.standard_normal(tuple(x0.shape), dtype=np.float32))
        eps = eps.to(x0.device)
        x_t = scheduler.add_noise(x0, eps, t)
        if self.stage == 1:
            return F.l1_loss(self.denoise(x_t, t, target, None), eps)
        u, v = self.pseudo_sr(ms_up, pan)
        loss = F.l1_loss(self.denoise(x_t, t, u, v), eps)
        aux = float(self.config["aux_weight"])
        return loss + aux * F.l1_loss(u, target) if aux > 0 else loss

    @staticmethod
    def is_prior(name: str) -> bool:
        """True for the stage-I tensors stage II keeps frozen (all but its additions)."""
        extra = ("aux.", "to_u.", "adapters.", "gate_mlp.")
        return not name.startswith(extra) and ".lora_" not in name

    def generate(
        self, ms_up: torch.Tensor, pan: torch.Tensor, scheduler: Any, noise: Any
    ) -> torch.Tensor:
        """The fused windows: DDIM (``scheduler``) from ``x_T = noise(T)`` over the
        residual, conditioned once per window (eq. 7 with the DDIM update), then
        ``L + X0 / g``. ``noise`` is the windowed sampler's positional draw."""
        n = ms_up.shape[0]
        cond = self.condition(ms_up, pan)
        x_T = noise(scheduler.schedule.T, self.n_bands, True)

        def denoise(x: torch.Tensor, t: int, _: Any) -> torch.Tensor:
            steps = torch.full((n,), int(t), dtype=torch.int64, device=ms_up.device)
            return self.step_output(x, steps, cond).float()

        x0 = scheduler.sample(denoise, x_T, noise_fn=lambda t: noise(t, self.n_bands, True))
        return self.to_image(ms_up, x0)
