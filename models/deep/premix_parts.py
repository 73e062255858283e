"""Building blocks of PreMix (Cui, Liu, Ma, Chen, Xu & Guo, "Pansharpening via predictive
filtering with element-wise feature mixing", ISPRS J. Photogramm. Remote Sens., 2025):
the mask functions (eq. 10-14, 16), the element-wise feature mixing layer (EWFM, eq. 1-5),
predictive filtering (eq. 17-20), the PreMix-Base unit shared by PreMix-B and every
stage of PreMix-H, and the inputs of PreMix-H's extra branches (high pass; global
histogram equalisation through monotone lookup tables).

The networks themselves are in :mod:`models.deep.premix`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from models.deep.common import ResBlock, conv

#: Scale of the kernel predictors' default initialisation (see PreMixUnit).
KERNEL_INIT = 0.1

# --- mask functions sigma of eq. (3) ---------------------------------------------------------


def _tanh_elu(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(F.elu(x) + 1.0)


def _softsign_elu(x: torch.Tensor) -> torch.Tensor:
    return F.softsign(F.elu(x) + 1.0)


def _tanh_relu(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(F.relu(x))


def _softsign_relu(x: torch.Tensor) -> torch.Tensor:
    return F.softsign(F.relu(x))


def _tanh_relu6(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(F.relu6(x))


#: sigma of eq. (3), by name: soft mixing (eq. 10-12), sparse soft mixing (eq. 13-14) and
#: the authors' code's variant of eq. 13, tanh(relu6(x)) (the cap at 6 changes nothing
#: numerically, tanh(6) = 1 - 1.2e-5, but keeps large activations from growing). All map
#: into [0, 1).
MASKS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,  # eq. (10)
    "tanh-elu": _tanh_elu,  # eq. (11)
    "softsign-elu": _softsign_elu,  # eq. (12)
    "tanh-relu": _tanh_relu,  # eq. (13)
    "softsign-relu": _softsign_relu,  # eq. (14)
    "tanh-relu6": _tanh_relu6,  # authors' code
}


def hard_mix(mask: torch.Tensor, beta: torch.Tensor, gain: float) -> torch.Tensor:
    """Eq. (16): sigmoid(gain (sigma - beta)), a differentiable step at the trainable
    threshold ``beta`` (the paper fixes the gain at 20): masks near 0 or 1, "hard mixing"."""
    return torch.sigmoid(gain * (mask - beta))


class EWFM(nn.Module):
    """One element-wise feature mixing layer (eq. 1-5).

    Each flow goes through its own ResBlock (eq. 1-2); a 3x3 conv of their sum and the
    mask function give M (eq. 3), hardened by eq. (16) when ``hard``; then the flows swap
    the fraction M of every element (eq. 4-5, both computed from the pre-mixing features).
    """

    def __init__(self, channels: int, mask: str, hard: bool, gain: float) -> None:
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"unknown mask {mask!r}; choose one of {sorted(MASKS)}")
        self.res_y = ResBlock(channels)
        self.res_p = ResBlock(channels)
        self.mask_conv = conv(channels, channels, 3)
        self.sigma = MASKS[mask]
        self.gain = float(gain)
        self.beta = nn.Parameter(torch.tensor(0.5)) if hard else None

    def mask(self, h_y: torch.Tensor, h_p: torch.Tensor) -> torch.Tensor:
        """M of eq. (3), through eq. (16) when hard mixing is on."""
        m = self.sigma(self.mask_conv(h_y + h_p))
        return m if self.beta is None else hard_mix(m, self.beta, self.gain)

    def forward(self, h_y: torch.Tensor, h_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h_y, h_p = self.res_y(h_y), self.res_p(h_p)
        m = self.mask(h_y, h_p)
        return h_y + m * (h_p - h_y), h_p + m * (h_y - h_p)  # eq. (4), (5)


# --- predictive filtering (eq. 17-20) --------------------------------------------------------


def predictive_filter(x: torch.Tensor, kernels: torch.Tensor, k: int) -> torch.Tensor:
    """Eq. (20): out[b, i] = sum_{d in k x k} kernels[b, d, i] * x[b, i + d].

    ``x`` (N, B or 1, H, W) (one channel is broadcast over the bands: the PAN), ``kernels``
    (N, B k^2, H, W) with channels ordered (band, tap) and taps row-major over offsets
    -k//2..k//2. A sum of k^2 shifted copies of the padded input, never a (N, B k^2, H, W)
    unfold of it. Reflect padding as the authors' code (replicate where the image is too
    small to reflect).
    """
    n, bk, h, w = kernels.shape
    b = bk // (k * k)
    kern = kernels.view(n, b, k * k, h, w)
    r = k // 2
    if r:
        mode = "reflect" if min(h, w) > r else "replicate"
        x = F.pad(x, (r, r, r, r), mode=mode)
    out = kern[:, :, 0] * x[:, :, :h, :w]
    for t in range(1, k * k):
        dy, dx = divmod(t, k)
        out = out + kern[:, :, t] * x[:, :, dy : dy + h, dx : dx + w]
    return out


class PreMixUnit(nn.Module):
    """PreMix-Base's body: heads, EWFM layers, kernel predictors (eq. 1-5, 17-18).

    Heads: a 3x3 conv B -> C per flow (Y; P repeated to B channels). Kernel predictor per
    flow: ResBlock then 3x3 conv C -> B k^2 (the paper's Conv() "incorporates a residual
    block", eq. 1-2; this also brings PreMix-B to Table 3's size). ``carry``: the previous
    unit's last features (PreMix-H), added after the first EWFM layer as the authors' code.
    """

    def __init__(
        self, n_bands: int, channels: int, layers: int, kernel: int, mask: str, hard: bool,
        gain: float,
    ) -> None:  # fmt: skip
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be odd and >= 1, got {kernel}")
        self.n_bands, self.kernel = n_bands, kernel
        self.head_y = conv(n_bands, channels, 3)
        self.head_p = conv(n_bands, channels, 3)
        self.layers = nn.ModuleList(EWFM(channels, mask, hard, gain) for _ in range(layers))
        taps = n_bands * kernel * kernel
        # K_Y and K_P are live together while filtering (models.deep.method.patch_bytes)
        self.transient_channels = 2 * taps
        self.kernels_y = nn.Sequential(ResBlock(channels), conv(channels, taps, 3))
        self.kernels_p = nn.Sequential(ResBlock(channels), conv(channels, taps, 3))
        with torch.no_grad():  # small kernels at first: the output starts at Y (residual)
            for last in (self.kernels_y[-1], self.kernels_p[-1]):  # and chained units
                last.weight.mul_(KERNEL_INIT)  # do not multiply up random filters
                last.bias.zero_()

    def features(
        self,
        y: torch.Tensor,
        p: torch.Tensor,
        carry: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """H_Y^L, H_P^L from Y (N, B, h, w) and P (N, 1, h, w)."""
        h_y = self.head_y(y)
        h_p = self.head_p(p.expand(-1, self.n_bands, -1, -1))
        for i, layer in enumerate(self.layers):
            h_y, h_p = layer(h_y, h_p)
            if i == 0 and carry is not None:
                h_y, h_p = h_y + carry[0], h_p + carry[1]
        return h_y, h_p

    def kernels(self, h_y: torch.Tensor, h_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K_Y, K_P of eq. (17)-(18): (N, B k^2, h, w) each."""
        return self.kernels_y(h_y), self.kernels_p(h_p)


def unit_reach(scale: int, layers: int, pre: int, carry: int | None) -> tuple[int, int]:
    """Receptive-field radii, in full-resolution pixels, of a unit working at 1/``scale``:
    (its last features around their lattice point, its kernels as applied at full
    resolution). ``pre``: the radius of the branch's own input filter; ``carry``: that of
    the carried features after resampling to this scale. Head 1 + 3 per EWFM layer (ResBlock
    2, mask conv 1) + predictor 3, at 1/scale; nearest upsampling of the kernels adds
    scale - 1."""
    feat = scale * 4 + pre
    if carry is not None:
        feat = max(feat, carry)
    feat += 3 * scale * (layers - 1)
    return feat, feat + 3 * scale + scale - 1


# --- PreMix-H's branch inputs ----------------------------------------------------------------


def high_pass(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """x minus its 3x3 Gaussian low pass (sigma 1.5, reflect padding): the HP branch's
    input (section 3.4)."""
    e = math.exp(-1.0 / (2 * sigma**2))
    g = torch.tensor([e, 1.0, e], dtype=torch.float64)  # taps sum to 1 in x's precision
    g = (g / g.sum()).to(x)
    c = x.shape[1]
    weight = (g[:, None] * g[None, :]).expand(c, 1, 3, 3)
    mode = "reflect" if min(x.shape[-2:]) > 1 else "replicate"
    return x - F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), weight, groups=c)


def cumulative_tables(counts: torch.Tensor) -> torch.Tensor:
    """(..., bins) counts -> (..., bins + 1) lookup tables on the knots j / bins: the
    fraction of values below each knot (0 first, 1 last); identity where a row is empty."""
    counts = counts.to(torch.float64).clamp(min=0)
    bins = counts.shape[-1]
    total = counts.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(total), counts.cumsum(-1)], -1) / total.clamp(min=1)
    cdf[..., -1] = 1.0
    identity = torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64).expand_as(cdf)
    return torch.where(total > 0, cdf, identity)


def apply_tables(x: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear lookup of x (N, C, H, W), clipped to [0, 1], in per-channel tables
    on a uniform grid of knots over [0, 1]: the equalised image. ``tables`` is (C, knots),
    one set for every sample, or (N, C, knots), one per sample (training windows drawn
    from different scenes, each equalised by its own scene's statistics)."""
    per_sample = tables.dim() == 3
    if per_sample and tables.shape[0] != x.shape[0]:
        raise ValueError(f"{tables.shape[0]} sets of tables for a batch of {x.shape[0]}")
    n_sets = tables.shape[0] if per_sample else 1
    c, knots = tables.shape[-2:]
    bins = knots - 1
    t = torch.nan_to_num(x).clamp(0.0, 1.0) * bins
    i = t.detach().floor().clamp(max=bins - 1)
    frac = t - i
    offset = torch.arange(c, device=x.device).view(1, c, 1, 1) * knots
    if per_sample:
        offset = offset + torch.arange(n_sets, device=x.device).view(-1, 1, 1, 1) * (c * knots)
    idx = i.long() + offset
    flat = tables.to(x.dtype).reshape(-1)
    lo, hi = flat[idx], flat[idx + 1]
    return lo + frac * (hi - lo)
