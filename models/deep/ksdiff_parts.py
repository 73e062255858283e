"""KSDiff's building blocks (Jin, Cao & Deng, "Kernel Space Diffusion Model for Efficient
Remote Sensing Pansharpening"): the Pyramid Latent Fusion Encoder (eq. 1-2), the
low-rank Tucker kernel modulation (eq. 3), the latent denoiser, ConvNeXt blocks.

Where the paper (its supplement is not in the corpus) leaves sizes open, pansharp's
choices are constructor arguments of :class:`models.deep.ksdiff.KSDiff` and are named
in each class below.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from models.deep.common import conv
from models.deep.nodiff import time_embedding

LATENT_NORMS = ("batch", "layer")
#: Pixels per chunk of a ConvNeXt block's per-pixel MLP at inference (see ConvNeXtBlock).
MLP_CHUNK = 4096


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` with NHWC strides (``torch.channels_last``; a no-op when it has them).

    Why KSDiff runs channels-last: on the CPU, oneDNN's convolutions are faster on NHWC
    maps, and the per-pixel layers (1x1 convolutions, the ConvNeXt MLP) then work on
    contiguous ``(..., C)`` rows instead of transposed copies (the measured fuse times
    are in ``models/deep/weights/README.md``; ``benchmarks/deep_models.py`` gives the
    model's time per megapixel).
    """
    return x.contiguous(memory_format=torch.channels_last)


class Pointwise(nn.Conv2d):
    """A 1x1 convolution (the same parameters, so the same state-dict names) computed as
    one matrix product per pixel, ``W x + b`` on the channels-last ``(N, H, W, C)`` view:
    the same sums as ``nn.Conv2d`` up to float rounding. Why: on the CPU, torch's 1x1
    convolution on (32, 32, 64, 64) maps took about 5 x as long as the matrix product;
    on channels-last input (:func:`channels_last`) the view needs no copy, and the
    output keeps channels-last strides."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rows(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """The layer on channels-last values ``(..., C_in) -> (..., C_out)``."""
        weight = self.weight.view(self.out_channels, self.in_channels)
        return F.linear(x, weight, self.bias)


class LatentStandardise(nn.Module):
    """``(z - mu) / sqrt(var + 1e-5)`` per feature, ``mu`` and ``var`` taken across the
    batch's windows while training and from running averages otherwise: batch
    normalisation without the affine (Ioffe & Szegedy 2015, Alg. 1).

    Why: the latent must describe its window, so each entry is standardised across
    windows, not across one token's channels. The running averages start as the plain
    mean of the batches seen (``count`` of them) and move to an exponential average of
    ``momentum`` 0.1 after ten, so a small spread is not held at the initial unit
    variance for hundreds of steps. A batch of one window has no spread to measure and
    uses the running averages. Statistics are taken in float32 whatever the autocast.
    """

    def __init__(self, features: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = float(momentum)
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))
        self.register_buffer("count", torch.zeros(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z.float()
        if self.training and x.shape[0] > 1:
            mean = x.mean(dim=0)
            var = x.var(dim=0, unbiased=False)
            with torch.no_grad():
                n = x.shape[0]
                m = max(self.momentum, 1.0 / (float(self.count) + 1.0))
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
                self.count.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        return ((x - mean) * torch.rsqrt(var + 1e-5)).to(z.dtype)


class LinearCrossAttention(nn.Module):
    """Eq. 1, efficient attention (Shen et al. WACV 2021) across two feature maps.

    ``Q`` from ``x``, ``K`` and ``V`` from the guide ``y`` (1x1 convs); ``Q`` is
    soft-maxed over its channels at each position, ``K`` over the positions for each
    channel; ``A = K^T V`` is ``d x d`` and ``O = Conv_out(Q A)``: memory ``O(d^2)``
    instead of ``O((HW)^2)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q = Pointwise(dim, dim)
        self.k = Pointwise(dim, dim)
        self.v = Pointwise(dim, dim)
        self.out = Pointwise(dim, dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n, d, h, w = x.shape
        xr = x.permute(0, 2, 3, 1).reshape(n, h * w, d)  # views of channels-last maps
        yr = y.permute(0, 2, 3, 1).reshape(n, h * w, d)
        q = self.q.rows(xr).softmax(dim=2)  # (N, HW, d), over channels
        k = self.k.rows(yr).softmax(dim=1)  # over positions
        v = self.v.rows(yr)
        a = torch.bmm(k.transpose(1, 2), v)  # (N, d, d): sum over positions
        o = torch.bmm(q, a)  # (N, HW, d)
        return self.out.rows(o).view(n, h, w, d).permute(0, 3, 1, 2)


class GuidedStage(nn.Module):
    """One pyramid stage: ``F = g x + (1 - g) Proj(y) + O`` (eq. 2) with the gate
    ``g = sigmoid(Conv_g[x; Proj(y)])`` and ``O`` the cross attention of eq. 1."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attend = LinearCrossAttention(dim)
        self.proj = Pointwise(dim, dim)
        self.gate = conv(2 * dim, dim, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        py = self.proj(y)
        g = torch.sigmoid(self.gate(torch.cat([x, py], dim=1)))
        # g x + (1 - g) Proj(y) as one pass over the maps (lerp's backward needs only its
        # inputs, so the sum may go into its result)
        return torch.lerp(py, x, g).add_(self.attend(x, y))


class PLFE(nn.Module):
    """Pyramid Latent Fusion Encoder -> latent tokens ``z`` (N, S, C_z).

    ``branches`` inputs (PAN, LRMS) are refined under a ``guide`` (PLFE_1: the HRMS;
    PLFE_2, the "halved" encoder of the inference path: the LRMS guides the PAN, one
    branch) over ``stages`` pyramid stages: a guided stage, then a stride-2 convolution
    of the branch and a bilinear halving of the guide. The last features of the
    branches are concatenated, pooled to a ``tokens_side`` x ``tokens_side`` grid (``S``
    tokens) and projected to ``C_z``, then standardised so the latent diffusion works on
    unit-scale values. Choices (paper silent): 2 stages, 3x3 stems, 4 x 4 = 16 tokens.

    ``norm`` names how the latent is made to describe its window. ``"layer"`` (the first
    shipped files) layer-normalised each token over its channels: input-independent
    terms (biases, zero padding) then set the latent, since the inputs, in DN / 255,
    differ between windows by a few hundredths: its spread across windows was 0.0067 at
    initialisation and training never made it depend on the image
    (``models/deep/weights/ksdiff_latent_spread.py``). ``"batch"`` (the default) first
    expresses every input in units of the window's PAN contrast
    (:func:`window_standardised`), so the features vary with the content at unit scale,
    and standardises each latent entry across windows (:class:`LatentStandardise`).
    """

    def __init__(
        self,
        in_channels: list[int],
        guide_channels: int,
        dim: int,
        latent: int,
        stages: int = 2,
        tokens_side: int = 4,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if norm not in LATENT_NORMS:
            raise ValueError(f"latent_norm must be one of {', '.join(LATENT_NORMS)}, got {norm!r}")
        self.stems = nn.ModuleList(conv(c, dim, 3) for c in in_channels)
        self.guide_stem = conv(guide_channels, dim, 3)
        self.stages = nn.ModuleList(
            nn.ModuleList(GuidedStage(dim) for _ in in_channels) for _ in range(stages)
        )
        self.down = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(dim, dim, 3, stride=2, padding=1) for _ in in_channels)
            for _ in range(stages)
        )
        self.tokens_side = int(tokens_side)
        self.to_latent = nn.Linear(dim * len(in_channels), latent)
        self.norm = LatentStandardise(self.tokens_side**2 * latent) if norm == "batch" else None

    def forward(self, inputs: list[torch.Tensor], guide: torch.Tensor) -> torch.Tensor:
        z = self.raw_latent(inputs, guide)
        if self.norm is None:
            return F.layer_norm(z, z.shape[-1:])
        return self.norm(z.flatten(1)).view(z.shape)

    def raw_latent(self, inputs: list[torch.Tensor], guide: torch.Tensor) -> torch.Tensor:
        """The tokens before the final standardisation (N, S, C_z)."""
        if self.norm is not None:
            inputs, guide = window_standardised(inputs, guide)
        xs = [
            channels_last(F.gelu(stem(channels_last(x))))
            for stem, x in zip(self.stems, inputs, strict=True)
        ]
        y = channels_last(F.gelu(self.guide_stem(channels_last(guide))))
        for stage, down in zip(self.stages, self.down, strict=True):
            xs = [F.gelu(d(s(x, y))) for s, d, x in zip(stage, down, xs, strict=True)]
            y = F.interpolate(y, size=xs[0].shape[-2:], mode="bilinear", align_corners=False)
        feats = torch.cat(xs, dim=1)
        pooled = F.adaptive_avg_pool2d(feats, self.tokens_side).flatten(2).transpose(1, 2)
        return self.to_latent(pooled)


def window_standardised(
    inputs: list[torch.Tensor], guide: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every image of a window as ``(x - mu) / s``, with ``mu`` and ``s`` the mean and
    standard deviation of the window's PAN (``inputs[0]``), the same for all images.

    Why one pair for all: the PAN-relative band levels and the guide's detail over the
    inputs (what the kernels should adapt to) survive, while the scene's brightness and
    the container's scale (DN / 255 or DN / 65535) do not set the features. ``s`` is at
    least ``0.01 |mu| + 1e-4``: a PAN flatter than 1 % of its level (water) is not
    stretched into its quantisation noise.
    """
    pan = inputs[0].float()
    mu = pan.mean(dim=(1, 2, 3), keepdim=True)
    s = pan.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    s = torch.maximum(s, 0.01 * mu.abs() + 1e-4)

    def scaled(x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - mu) / s).to(x.dtype)

    return [scaled(x) for x in inputs], scaled(guide)


class LatentDenoiser(nn.Module):
    """``z_theta(z_t, t, c) -> z0_hat`` (x0 prediction, eq. 9) on tokens (N, S, C_z).

    Per token ``[z_t, c]`` through a linear layer, plus the time embedding, then
    ``blocks`` residual blocks that mix the tokens (a linear layer over S) and the
    channels (a two-layer MLP), each after a LayerNorm; a linear head back to C_z.
    Choices (paper silent): hidden 2 C_z, 3 blocks.
    """

    def __init__(self, latent: int, tokens: int, blocks: int = 3) -> None:
        super().__init__()
        hidden = 2 * latent
        self.inp = nn.Linear(2 * latent, hidden)
        self.time = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(2 * blocks))
        self.mix = nn.ModuleList(nn.Linear(tokens, tokens) for _ in range(blocks))
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
            for _ in range(blocks)
        )
        self.out = nn.Linear(hidden, latent)
        self.hidden = hidden

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.inp(torch.cat([z_t, c], dim=-1))
        h = h + self.time(time_embedding(t, self.hidden))[:, None, :]
        for k, (mix, mlp) in enumerate(zip(self.mix, self.mlp, strict=True)):
            h = h + mix(self.norms[2 * k](h).transpose(1, 2)).transpose(1, 2)
            h = h + mlp(self.norms[2 * k + 1](h))
        return self.out(h)


class KernelModulation(nn.Module):
    """Eq. 3 for one depthwise ``k x k`` convolution of ``channels`` maps.

    ``W = 1 + G x_1 U1 x_2 U2 x_3 U3 x_4 U4`` multiplies the base kernel ``W0``
    (``W1 = W0 . W``). The core ``G`` (r1, r2, r3, r4) comes from the latent's centroid
    ``e`` (mean over tokens) through an MLP whose last layer starts at zero, so
    ``W = 1`` at initialisation (pansharp's choice: the network starts as the plain
    PanNeXt-U). The factors ``U^(n)`` (d_n x r_n) come from the layer's input features
    (the "unified factor generator"): pooled to 4 x 4 tokens, a shared linear backbone,
    then one attention head per mode whose ``d_n`` learned queries attend over the
    tokens ("structure-aware multi-head attention"). For a depthwise kernel the input
    mode has ``d_1 = 1``; ranks default to the paper's best (4, 4, 2, 2) with
    ``r_1 = 1`` there.

    ``unit_factors`` (the default) gives every column of every factor unit root mean
    square over its mode, ``U / sqrt(mean_d U^2 + 1e-6)``: the Tucker convention of
    orthonormal factors with the scale in the core (Kolda & Bader 2009, sec. 4), up to
    the ``sqrt(d_n)``. Why: the raw factors of the first shipped files come out of
    linear layers at about 0.1 each, so the four-fold product made a unit change of
    the core move ``W`` by about 1e-4; after training, a zero latent changed their
    output by at most 1.84 DN (mean 0.24): the modulation had never left ``W = 1``.
    With unit factors a change of the core moves ``W`` by the same order.
    """

    def __init__(
        self,
        channels: int,
        k: int,
        latent: int,
        ranks: tuple[int, int, int, int],
        unit_factors: bool = True,
    ) -> None:
        super().__init__()
        self.unit_factors = bool(unit_factors)
        self.dims = (1, channels, k, k)
        self.ranks = tuple(int(r) for r in ranks)
        n_core = math.prod(self.ranks)
        self.core = nn.Sequential(nn.Linear(latent, latent), nn.GELU(), nn.Linear(latent, n_core))
        nn.init.zeros_(self.core[-1].weight)
        nn.init.zeros_(self.core[-1].bias)
        hidden = 32
        self.backbone = nn.Sequential(nn.Linear(channels, hidden), nn.GELU())
        self.queries = nn.ParameterList(
            nn.Parameter(torch.randn(d, hidden) / math.sqrt(hidden)) for d in self.dims
        )
        self.keys = nn.Linear(hidden, hidden)
        self.values = nn.ModuleList(nn.Linear(hidden, r) for r in self.ranks)

    def forward(self, z: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """(N, channels, 1, k, k): the multiplicative modulation ``W`` per sample."""
        n = z.shape[0]
        g = self.core(z.mean(dim=1)).view(n, *self.ranks)
        tokens = self.backbone(F.adaptive_avg_pool2d(feats, 4).flatten(2).transpose(1, 2))
        keys = self.keys(tokens)  # (N, 16, hidden)
        factors = []
        for q, val in zip(self.queries, self.values, strict=True):
            att = torch.softmax(q @ keys.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
            u = val(att @ tokens)  # (N, d_n, r_n)
            if self.unit_factors:
                u = u * torch.rsqrt(u.pow(2).mean(dim=1, keepdim=True) + 1e-6)
            factors.append(u)
        u1, u2, u3, u4 = factors
        w = torch.einsum("nabcd,nia->nibcd", g, u1)
        w = torch.einsum("nibcd,nob->noicd", w, u2)
        w = torch.einsum("noicd,nxc->noixd", w, u3)
        w = torch.einsum("noixd,nyd->noixy", w, u4)
        return 1.0 + w  # (N, C_out, C_in=1, k, k)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (Liu et al. CVPR 2022): depthwise ``k x k`` (here modulated per
    sample by :class:`KernelModulation`), LayerNorm, 1x1 to 4C, GELU, 1x1 back, a layer
    scale (init 0.1), residual.

    Without gradients the per-pixel part (LayerNorm to the second 1x1) runs on
    :data:`MLP_CHUNK` pixels at a time: each pixel's result is the same (bit for bit:
    tested), and the 4C-wide hidden maps of a chunk stay in the CPU's cache instead of
    going through memory whole (the block took about half the time on (32, 32, 64, 64)
    maps). With gradients the whole maps go through at once, as autograd needs them.
    """

    def __init__(
        self,
        channels: int,
        k: int,
        latent: int,
        ranks: tuple[int, int, int, int],
        unit_factors: bool = True,
    ) -> None:
        super().__init__()
        self.k = int(k)
        self.dw = nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels)
        self.modulate = KernelModulation(channels, k, latent, ranks, unit_factors)
        self.norm = nn.LayerNorm(channels)
        self.pw1 = nn.Linear(channels, 4 * channels)
        self.pw2 = nn.Linear(4 * channels, channels)
        self.scale = nn.Parameter(torch.full((channels,), 0.1))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = channels_last(x)
        kernel = self.dw.weight[None] * self.modulate(z, x)  # (N, C, 1, k, k)
        y = torch.cat(  # each sample with its own kernels: a view, no batch-to-group copy
            [
                F.conv2d(x[i : i + 1], kernel[i], self.dw.bias, padding=self.k // 2, groups=c)
                for i in range(n)
            ]
        )
        rows, x_rows = y.permute(0, 2, 3, 1), x.permute(0, 2, 3, 1)  # (N, H, W, C) views
        if torch.is_grad_enabled():
            out = torch.addcmul(x_rows, self.scale, self.mlp(rows))
        else:
            rows, x_rows = rows.reshape(-1, c), x_rows.reshape(-1, c)
            out = torch.empty_like(rows)
            for i in range(0, rows.shape[0], MLP_CHUNK):
                part = slice(i, i + MLP_CHUNK)
                out[part] = torch.addcmul(x_rows[part], self.scale, self.mlp(rows[part]))
            out = out.view(n, h, w, c)
        return out.permute(0, 3, 1, 2)

    def mlp(self, y: torch.Tensor) -> torch.Tensor:
        """The per-pixel part on channels-last values (..., C)."""
        return self.pw2(F.gelu(self.pw1(self.norm(y))))
