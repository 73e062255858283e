"""OTPNet (Yu, Li, Liu & Sun, "OTPNet: ODE-inspired Tuning-free Proximal Network for
Remote Sensing Image Fusion", AAAI 2025).

The fusion is the variational problem of eq. 2,
``min_H 1/2 ||L - D H||^2 + 1/2 ||P - H S||^2 + R(H)``, split into a PAN (spectral) and
an LR-MS (spatial) sub-problem (eq. 3), each solved by its proximal operator (eq. 5),
alternated by Douglas-Rachford splitting (eq. 6) with learnable step sizes (eq. 7)::

    F^k = prox_P^k(H^{k-1}) - H_P^k
    G^k = prox_L^k(lambda^k F^{k-1} + mu^k H^{k-1}) - H_L^k
    H^k = H^{k-1} + alpha^k G^k + beta^k F^k

pansharp's reading of the intermediate terms (the paper does not define them further):
residual learning around each operator, H_P^k = H^{k-1} and H_L^k = the operator's own
input, so F and G are the corrections each proximal step proposes; H^0 = the
interpolated MS, F^0 = 0.

Each proximal operator is a gradient step on its data term, with a learnable step
gamma, followed by the ODE-inspired proximal network: a 3x3 head from [X, PAN] to C
maps, ``rk_blocks`` fourth-order Runge-Kutta blocks with learnable weights omega1-4
(eq. 13: N + omega4 (k1 + 2 k2 + 2 k3 + k4), k_i = F(N + omega_{i-1} k_{i-1}); omega
initialised to the classical RK4 (1/2, 1/2, 1, 1/6)), F = conv-ReLU-conv, and a 3x3 tail
back to B bands added to X. The data terms use the real operators (eq. 1):

- D = the sensor's MTF blur (:func:`physics.mtf.mtf_kernel`, per band) then decimation at
  the MS sample positions; the patch is ratio-aligned (sample (i, j) on pixel (r i, r j)),
  so decimation keeps pixels (r i, r j). The 41-tap kernel is cut to its central
  (4r + 1)^2 taps and renormalised: at Nyquist gains 0.15-0.5 they hold >= 99.7 % of its
  sum at ratios 2-4 (tests/test_otpnet.py), and the receptive field stays a few ratios wide rather
  than 40 pixels per iteration. D^T = zero insertion at the samples and the same
  (symmetric) blur; both zero-padded, so D^T is D's exact adjoint.
- S = the spectral response: pseudo-PAN = sum_b w_b H_b with the sensor's band weights
  (physics.sensors), S^T e = (w_b e)_b.

Gains, weights and ratio come from the sensor at training time and are written in the
weights card with the other constructor arguments. Defaults (3 iterations, 32 maps, one
RK4 block per operator) are small enough to train on a CPU; the paper does not state
its widths.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.deep.common import PansharpNet, conv
from physics.mtf import MTF_HALF, mtf_kernel

#: Scale of the proximal networks' default tail initialisation (see ProxNet).
TAIL_INIT = 0.1


def truncated_mtf(gains: Sequence[float], ratio: int) -> np.ndarray:
    """(B, 1, 4r+1, 4r+1) blur taps: each band's MTF kernel, central part, sum 1."""
    h = 2 * ratio
    c = MTF_HALF
    taps = []
    for g in gains:
        k = mtf_kernel(float(g), int(ratio))[c - h : c + h + 1, c - h : c + h + 1]
        taps.append(k / k.sum())
    return np.stack(taps)[:, None]


class RK4Block(nn.Module):
    """Eq. 13: one fourth-order Runge-Kutta step of the learned vector field F."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.f = nn.Sequential(
            conv(channels, channels, 3), nn.ReLU(inplace=True), conv(channels, channels, 3)
        )
        self.omega = nn.Parameter(torch.tensor([0.5, 0.5, 1.0, 1.0 / 6.0]))
        # live at once beyond a plain conv stack: k1..k4, the stage input N + w k, F's
        # inner map and the head's input and output (models.deep.method.patch_bytes:
        # 461 floats per pixel planned at C = 32, 4 bands; 318-384 measured by
        # tests/test_deep_memory.py's probe)
        self.transient_channels = 8 * channels

    def forward(self, n: torch.Tensor) -> torch.Tensor:
        w = self.omega
        k1 = self.f(n)
        k2 = self.f(n + w[0] * k1)
        k3 = self.f(n + w[1] * k2)
        k4 = self.f(n + w[2] * k3)
        return n + w[3] * (k1 + 2 * k2 + 2 * k3 + k4)


class ProxNet(nn.Module):
    """The learned proximal network: head from [X, PAN], RK4 blocks, tail, plus X."""

    def __init__(self, n_bands: int, channels: int, rk_blocks: int) -> None:
        super().__init__()
        self.head = conv(n_bands + 1, channels, 3)
        self.blocks = nn.Sequential(*(RK4Block(channels) for _ in range(rk_blocks)))
        self.tail = conv(channels, n_bands, 3)
        with torch.no_grad():  # start near the identity: the unfolded iterations then begin
            self.tail.weight.mul_(TAIL_INIT)  # as plain gradient steps on the data terms
            self.tail.bias.zero_()

    def forward(self, x: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        return x + self.tail(self.blocks(self.head(torch.cat([x, pan], 1))))


class OTPNet(PansharpNet):
    """OTPNet with ``iterations`` unfolded Douglas-Rachford steps (module docstring)."""

    name = "otpnet"

    @property
    def split_points(self) -> tuple[str, ...]:
        """The last iteration's two proximal heads: their inputs are the final features
        (models.deep.tailor)."""
        k = self.config["iterations"] - 1
        return (f"prox_p.{k}.tail", f"prox_l.{k}.tail")

    needs_lowres = True
    ratio_aligned = True

    def __init__(
        self,
        n_bands: int,
        ratio: int = 4,
        gains: Sequence[float] | None = None,
        band_weights: Sequence[float] | None = None,
        iterations: int = 3,
        channels: int = 32,
        rk_blocks: int = 1,
    ) -> None:
        b = int(n_bands)
        gains = [0.3] * b if gains is None else [float(g) for g in gains]
        weights = [1.0 / b] * b if band_weights is None else [float(w) for w in band_weights]
        if len(gains) != b or len(weights) != b:
            raise ValueError(f"otpnet: {len(gains)} gains, {len(weights)} band weights, {b} bands")
        if int(ratio) < 2 or int(iterations) < 1 or int(rk_blocks) < 1:
            raise ValueError("otpnet: need ratio >= 2, iterations >= 1 and rk_blocks >= 1")
        super().__init__(
            b,
            ratio=int(ratio),
            gains=gains,
            band_weights=weights,
            iterations=int(iterations),
            channels=int(channels),
            rk_blocks=int(rk_blocks),
        )
        self.ratio = int(ratio)
        self.register_buffer(
            "blur", torch.tensor(truncated_mtf(gains, self.ratio), dtype=torch.float32), False
        )
        self.register_buffer(
            "spectral", torch.tensor(weights, dtype=torch.float32).view(1, b, 1, 1), False
        )
        k = int(iterations)
        self.prox_p = nn.ModuleList(ProxNet(b, channels, rk_blocks) for _ in range(k))
        self.prox_l = nn.ModuleList(ProxNet(b, channels, rk_blocks) for _ in range(k))
        self.gamma_p = nn.Parameter(torch.full((k,), 0.5))
        self.gamma_l = nn.Parameter(torch.full((k,), 0.5))
        # eq. 7 step sizes mu, lambda, alpha, beta per iteration
        self.steps = nn.Parameter(torch.tensor([[1.0, 1.0, 1.0, 1.0]] * k))

    @property
    def halo(self) -> int:
        """Per iteration: D^T D reaches 2 x 2r (blur, decimate, insert, blur), the prox
        networks' head and tail 2 and each RK4 block 8 (four chained F of two convs)."""
        c = self.config
        return c["iterations"] * (4 * self.ratio + 2 + 8 * c["rk_blocks"])

    # -- the physics operators (eq. 1) ---------------------------------------------------
    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        h = 2 * self.ratio
        return F.conv2d(F.pad(x, (h, h, h, h)), self.blur.to(x.dtype), groups=x.shape[1])

    def degrade(self, x: torch.Tensor) -> torch.Tensor:
        """D H: MTF blur, then the samples at (r i, r j)."""
        r = self.ratio
        return self._blur(x)[..., ::r, ::r]

    def degrade_adjoint(self, e: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        """D^T e: the samples put back at (r i, r j) of a zero image, then the blur."""
        r = self.ratio
        up = e.new_zeros((*e.shape[:2], *shape))
        up[..., ::r, ::r] = e
        return self._blur(up)

    def pseudo_pan(self, x: torch.Tensor) -> torch.Tensor:
        """H S: the spectral response, (N, 1, H, W)."""
        return (x * self.spectral.to(x.dtype)).sum(1, keepdim=True)

    def forward(
        self, ms_up: torch.Tensor, pan: torch.Tensor, lr: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.check_inputs(ms_up, pan)
        r = self.ratio
        n, b, hh, ww = ms_up.shape
        want = (n, b, -(-hh // r), -(-ww // r))
        if lr is None:
            lr = ms_up[..., ::r, ::r]
        elif tuple(lr.shape) != want:
            raise ValueError(
                f"otpnet: lr must be {want} for a {hh}x{ww} patch at ratio {r}, "
                f"got {tuple(lr.shape)}"
            )
        w = self.spectral.to(ms_up.dtype)
        h = ms_up
        f_prev = torch.zeros_like(ms_up)
        for k in range(self.config["iterations"]):
            mu, lam, alpha, beta = self.steps[k]
            x_p = h - self.gamma_p[k] * w * (self.pseudo_pan(h) - pan)
            f = self.prox_p[k](x_p, pan) - h
            z = lam * f_prev + mu * h
            resid = self.degrade(z) - lr
            x_l = z - self.gamma_l[k] * self.degrade_adjoint(resid, (hh, ww))
            g = self.prox_l[k](x_l, pan) - z
            h = h + alpha * g + beta * f
            f_prev = f
        return h
