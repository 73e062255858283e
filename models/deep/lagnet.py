"""LAGNet: the network built on LAGConv (Jin, Zhang, Jiang, Vivone & Deng, "LAGConv:
Local-context adaptive convolution kernels with global harmonic bias for
pansharpening", AAAI 2022).

A standard convolution applies one kernel everywhere; pansharpening needs pixel-wise
care (edges vs. flat fields), so LAGConv modulates the kernel at every pixel:

- local-context adaptive (LCA) kernel: a small branch (k x k conv to k^2 maps, ReLU,
  1x1, ReLU, 1x1, sigmoid) turns each pixel's k x k neighbourhood into k^2 weights in
  (0, 1) that multiply the neighbourhood before the shared static kernel is applied;
- global harmonic (GH) bias: global average pooling, then 1x1 conv, ReLU, 1x1 conv,
  gives a per-image, per-output-channel bias replacing the static one, so every pixel's
  response also depends on the whole image's content.

LAGNet (published size): MS_up stacked with PAN -> LAGConv to 32 maps + ReLU -> 5 residual
blocks of two LAGConvs (32 maps) -> LAGConv to B bands, added to MS_up.

Tiling caveat: the GH bias pools over the whole input, so a tiled run is not exactly
the whole-image run (the pooled mean is the tile's, halo included). The registry marks
this with ``extra["global_context"] = True``; ``global_bias=False`` removes the GH bias
(the paper's ablation) and makes the network strictly local (halo 12).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.deep.common import PansharpNet


class _ShiftMix(torch.autograd.Function):
    """Sum over the k^2 taps of a modulated, shifted response, with a lean backward.

    ``u`` (k^2, O, N, H+2r, W+2r) holds ``W_j x`` for every tap j (a 1x1 product of the
    static kernel's tap j with the zero-padded input); ``mod`` (N, k^2, H, W) holds the LCA
    weights. The output is ``y[o, n, p] = sum_j mod[n, j, p] * u[j, o, n, p + d_j]``, i.e.
    eq. (3)-(4) of the paper, ``sum_j (m_j(p) w_j) . x(p + d_j)``, with the modulation moved
    past the channel sum (it is shared by all input channels). Autograd through slicing
    would allocate and zero a full ``u``-sized gradient per tap; this backward writes each
    tap's gradient once.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, mod: torch.Tensor, k: int) -> torch.Tensor:  # type: ignore[override]
        k2, h, w = k * k, mod.shape[2], mod.shape[3]
        y = torch.mul(u[0, :, :, :h, :w], mod[:, 0])
        for j in range(1, k2):
            dy, dx = divmod(j, k)
            y.addcmul_(u[j, :, :, dy : dy + h, dx : dx + w], mod[:, j])
        ctx.save_for_backward(u, mod)
        ctx.k = k
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        u, mod = ctx.saved_tensors
        k = ctx.k
        h, w = mod.shape[2], mod.shape[3]
        grad_u = grad_mod = None
        if ctx.needs_input_grad[0]:
            grad_u = torch.empty_like(u)
            for j in range(k * k):
                dy, dx = divmod(j, k)
                tap = grad_u[j]
                # the padded border that tap j does not reach gets no gradient
                tap[:, :, :dy].zero_()
                tap[:, :, dy + h :].zero_()
                tap[:, :, dy : dy + h, :dx].zero_()
                tap[:, :, dy : dy + h, dx + w :].zero_()
                torch.mul(g, mod[:, j], out=tap[:, :, dy : dy + h, dx : dx + w])
        if ctx.needs_input_grad[1]:
            grad_mod = torch.empty_like(mod)
            for j in range(k * k):
                dy, dx = divmod(j, k)
                torch.sum(g * u[j, :, :, dy : dy + h, dx : dx + w], dim=0, out=grad_mod[:, j])
        return grad_u, grad_mod, None


class LAGConv(nn.Module):
    """k x k convolution with local-context adaptive kernels and a global harmonic bias."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, global_bias: bool = True) -> None:
        super().__init__()
        if k % 2 == 0:
            raise ValueError(f"LAGConv needs an odd kernel size, got {k}")
        self.c_in, self.c_out, self.k = c_in, c_out, k
        k2 = k * k
        self.context = nn.Sequential(
            nn.Conv2d(c_in, k2, k, padding=k // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(k2, k2, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(k2, k2, 1),
            nn.Sigmoid(),
        )
        self.harmonic: nn.Module | None = None
        if global_bias:
            self.harmonic = nn.Sequential(
                nn.AdaptiveAvgPool2d(1),
                nn.Conv2d(c_in, c_out, 1),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 1),
            )
        self.weight = nn.Parameter(torch.empty(c_out, c_in, k, k))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default
        # maps per pixel alive during forward (u and its padded copy), for memory planning
        self.transient_channels = 2 * k2 * c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One GEMM for all taps, then the modulated shift-and-sum.

        The direct form (unfold to (N, C k^2, HW), multiply, GEMM) is memory-bound on a
        CPU: a training step on 16 patches of 64x64 (published size, 4 bands, 2 cores)
        took ~5 s in that form against 1.6-1.8 s here.
        """
        n, c, h, w = x.shape
        k, r = self.k, self.k // 2
        modulation = self.context(x)  # (N, k^2, H, W), shared over input channels
        taps = self.weight.permute(2, 3, 0, 1).reshape(k * k * self.c_out, c)
        padded = F.pad(x, (r, r, r, r)).transpose(0, 1).reshape(c, -1)
        u = torch.mm(taps, padded).view(k * k, self.c_out, n, h + 2 * r, w + 2 * r)
        y = _ShiftMix.apply(u, modulation, k).transpose(0, 1)
        if self.harmonic is not None:
            y = y + self.harmonic(x)
        return y


class LACRB(nn.Module):
    """Residual block of two LAGConvs with a ReLU between them."""

    def __init__(self, channels: int, k: int, global_bias: bool) -> None:
        super().__init__()
        self.conv1 = LAGConv(channels, channels, k, global_bias)
        self.conv2 = LAGConv(channels, channels, k, global_bias)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class LAGNet(PansharpNet):
    """LAGNet; ``channels=32``, ``n_blocks=5``, ``kernel=3``, GH bias on, as published."""

    name = "lagnet"
    #: where the fused features meet the head to bands (models.deep.tailor)
    split_points = ("tail",)

    def __init__(
        self,
        n_bands: int,
        channels: int = 32,
        n_blocks: int = 5,
        kernel: int = 3,
        global_bias: bool = True,
    ) -> None:
        super().__init__(
            n_bands,
            channels=int(channels),
            n_blocks=int(n_blocks),
            kernel=int(kernel),
            global_bias=bool(global_bias),
        )
        self.head = LAGConv(n_bands + 1, channels, kernel, global_bias)
        self.relu = nn.ReLU(inplace=True)
        self.blocks = nn.Sequential(
            *(LACRB(channels, kernel, global_bias) for _ in range(n_blocks))
        )
        self.tail = LAGConv(channels, n_bands, kernel, global_bias)

    @property
    def halo(self) -> int:
        """Half-width of the local receptive field (the GH bias is global, see module doc)."""
        return (self.config["kernel"] // 2) * (2 + 2 * self.config["n_blocks"])

    def forward(self, ms_up: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        self.check_inputs(ms_up, pan)
        x = self.relu(self.head(torch.cat([ms_up, pan], dim=1)))
        return ms_up + self.tail(self.blocks(x))
