"""PreMix-B and PreMix-H (Cui, Liu, Ma, Chen, Xu & Guo, "Pansharpening via predictive
filtering with element-wise feature mixing", ISPRS J. Photogramm. Remote Sens., 2025).

PreMix predicts a k x k filter for every pixel and band instead of the pixel itself:
``X = Y (*) K_Y + P (*) K_P`` (eq. 19-20), the kernels K_Y, K_P read from the last
features of two flows (LRMS Y, PAN P) that exchange information element by element in
EWFM layers (eq. 3-5, 16). As in the authors' code, the upsampled MS is added to the
filtered result (``residual``), so the network starts near the interpolated MS.

PreMix-H (section 3.4, Fig. 7) chains PreMix-Base units over three branches (the
original inputs; their histogram equalisation, HE; their high pass, HP) times three
scales (nearest-neighbour downscalings by 4 and 2, then full resolution, eq. 21-23):
each unit predicts kernels from its branch's inputs at its scale, upsampled (nearest) to
full resolution, and filters the previous unit's result and the PAN; the last features
of each unit are added to the next one's (resampled to its scale). pansharp's choices
where the paper is open:

- HE is a *global* equalisation (the paper's Fig. 8b; the authors' code uses CLAHE) by
  lookup tables of scene-wide cumulative histograms (``set_equalisation``, from the
  scene's scan in ``fuse``): a patch's result then does not depend on where the patch
  plan cuts the scene. ``train`` equalises each window by the statistics of its own
  scene (random windows of that scene) and validates each held-out crop by its own, as
  ``fuse`` would: pooled tables of all training scenes let the HE branch learn values
  it never sees in ``fuse`` (held-out Q2n fell from 0.9308 to 0.9209 and 0.8838 to
  0.8454 on two crops when fused with their own tables instead of the pooled ones).
- The PAN filtered by every unit is the original PAN, so every stage's output stays in
  the image's units; the HE and HP inputs only steer the kernels.
- Patch origins are multiples of 4 pixels apart (``lattice``), so every patch's
  pyramid samples the scene's: tiled output equals the whole-image output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from models.deep.common import PansharpNet
from models.deep.premix_parts import (
    PreMixUnit,
    apply_tables,
    cumulative_tables,
    high_pass,
    predictive_filter,
    unit_reach,
)

#: PreMix-H's branches, in the order they run (Fig. 7).
BRANCHES = ("original", "equalised", "high-pass")


def _upsample(x: torch.Tensor, factor: int, shape: tuple[int, int]) -> torch.Tensor:
    """Nearest upsampling by an integer ``factor``, cut to ``shape``: pixel y takes the
    sample at y // factor (the lattice point at or before it)."""
    if factor > 1:
        x = x.repeat_interleave(factor, -2).repeat_interleave(factor, -1)
    return x[..., : shape[0], : shape[1]]


def _resample(x: torch.Tensor, src: int, dst: int, shape: tuple[int, int]) -> torch.Tensor:
    """Features on the 1/``src`` lattice onto the 1/``dst`` one, ``shape`` samples."""
    if src >= dst:
        return _upsample(x, src // dst, shape)
    return x[..., :: dst // src, :: dst // src][..., : shape[0], : shape[1]]


class PreMixB(PansharpNet):
    """PreMix-Base: one PreMixUnit at full resolution, filtering Y and P once (eq. 19)."""

    name = "premix-b"
    #: the two kernel predictors' inputs, the last features of both flows (models.deep.tailor)
    split_points = ("unit.kernels_y", "unit.kernels_p")

    def __init__(
        self,
        n_bands: int,
        channels: int = 32,
        layers: int = 2,
        kernel: int = 3,
        mask: str = "tanh-relu6",
        hard: bool = True,
        gain: float = 20.0,
        residual: bool = True,
    ) -> None:
        super().__init__(
            n_bands,
            channels=int(channels),
            layers=int(layers),
            kernel=int(kernel),
            mask=str(mask),
            hard=bool(hard),
            gain=float(gain),
            residual=bool(residual),
        )
        self.unit = PreMixUnit(
            self.n_bands, int(channels), int(layers), int(kernel), mask, hard, gain
        )
        self.kernel = int(kernel)
        self.residual = bool(residual)

    @property
    def halo(self) -> int:
        """The kernels' reach (unit_reach at scale 1): a kernel is read at the output
        pixel itself, and the filtered inputs add only k // 2, less than the kernels'."""
        return max(unit_reach(1, self.config["layers"], 0, None)[1], self.kernel // 2)

    def forward(self, ms_up: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        self.check_inputs(ms_up, pan)
        k_y, k_p = self.unit.kernels(*self.unit.features(ms_up, pan))
        out = predictive_filter(ms_up, k_y, self.kernel) + predictive_filter(pan, k_p, self.kernel)
        return out + ms_up if self.residual else out


class PreMixH(PansharpNet):
    """PreMix-Huge: 3 branches x ``scales`` progressive filtering (eq. 21-23, Fig. 7)."""

    name = "premix-h"

    @property
    def split_points(self) -> tuple[str, ...]:
        """The last unit's two kernel predictors (models.deep.tailor)."""
        b, s = len(BRANCHES) - 1, len(self.scales) - 1
        return (f"units.{b}.{s}.kernels_y", f"units.{b}.{s}.kernels_p")

    lattice = 4

    def __init__(
        self,
        n_bands: int,
        channels: int = 32,
        layers: int = 1,
        kernel: int = 3,
        mask: str = "tanh-relu6",
        hard: bool = True,
        gain: float = 20.0,
        scales: Sequence[int] = (4, 2, 1),
        bins: int = 256,
        residual: bool = True,
    ) -> None:
        scales = [int(s) for s in scales]
        if not scales or any(s < 1 or 4 % s for s in scales):
            raise ValueError(f"premix-h: scales must divide 4, got {scales}")
        if int(bins) < 2:
            raise ValueError(f"premix-h: bins must be >= 2, got {bins}")
        super().__init__(
            n_bands,
            channels=int(channels),
            layers=int(layers),
            kernel=int(kernel),
            mask=str(mask),
            hard=bool(hard),
            gain=float(gain),
            scales=scales,
            bins=int(bins),
            residual=bool(residual),
        )
        b = self.n_bands
        self.kernel, self.scales, self.residual = int(kernel), scales, bool(residual)
        self.equalisation_bins = int(bins)
        self.lattice = max(scales)
        self.units = nn.ModuleList(
            nn.ModuleList(
                PreMixUnit(b, int(channels), int(layers), int(kernel), mask, hard, gain)
                for _ in scales
            )
            for _ in BRANCHES
        )
        # full-resolution maps beyond one unit's: both kernels and their two nearest-
        # upsampled copies, the carried and the new features of both flows with their
        # ResBlocks' inner maps, and the HE and HP branch inputs (patch_bytes; measured
        # in tests/test_deep_memory.py)
        taps = b * int(kernel) ** 2
        self.transient_channels = 6 * taps + 6 * int(channels) + 3 * (b + 1)
        ident = torch.linspace(0.0, 1.0, int(bins) + 1)
        self.register_buffer("he_ms", ident.repeat(b, 1))
        self.register_buffer("he_pan", ident.view(1, -1).clone())
        #: (ms, pan) tables per sample of the batch, (N, B, knots) and (N, 1, knots), or
        #: None: the scene tables above (set_equalisation).
        self.sample_tables: tuple[torch.Tensor, torch.Tensor] | None = None

    def set_equalisation(self, ms_hist: np.ndarray, pan_hist: np.ndarray) -> None:
        """HE lookup tables from value counts, as :func:`models.deep.method.
        value_histograms` bins them.

        Scene counts, ``ms_hist`` (B, bins) and ``pan_hist`` (bins,) or (1, bins), set
        the tables of every following patch (the ``he_ms``/``he_pan`` buffers, saved
        with the weights); they also drop any per-sample tables. Per-sample counts,
        ``ms_hist`` (N, B, bins) and ``pan_hist`` (N, bins) or (N, 1, bins), equalise
        sample n of the next batches by its own scene's statistics, as ``fuse`` does
        with a whole scene (training draws windows from many scenes); they are not
        saved.
        """
        ms = torch.as_tensor(np.asarray(ms_hist, dtype=np.float64))
        pan = torch.as_tensor(np.asarray(pan_hist, dtype=np.float64))
        per_sample = ms.dim() == 3
        lead = (ms.shape[0],) if per_sample else ()
        pan = pan.reshape(*lead, 1, -1) if pan.numel() else pan
        want = (self.n_bands, self.equalisation_bins)
        if (
            tuple(ms.shape[-2:]) != want
            or ms.dim() not in (2, 3)
            or (tuple(pan.shape) != (*lead, 1, want[1]))
        ):
            raise ValueError(
                f"premix-h: histograms must be {want} and (1, {want[1]}) per scene (or "
                f"per sample, with a leading N), got {tuple(ms.shape)} and "
                f"{tuple(np.shape(pan_hist))}"
            )
        if per_sample:
            self.sample_tables = (
                cumulative_tables(ms).to(self.he_ms),
                cumulative_tables(pan).to(self.he_pan),
            )
            return
        self.sample_tables = None
        self.he_ms.copy_(cumulative_tables(ms).to(self.he_ms))
        self.he_pan.copy_(cumulative_tables(pan[0]).to(self.he_pan))

    @property
    def halo(self) -> int:
        """The receptive-field radius of the output, following every unit in order:
        each filtering reaches k // 2 beyond its input's radius and as far as its kernels
        (read at the output pixel)."""
        r, x, carry, prev = self.kernel // 2, 0, None, None
        for pre in (0, 0, 1):  # branch input filters: none, global tables, 3x3 low pass
            for s in self.scales:
                c = None
                if carry is not None:  # sampled at floor: up to prev - s pixels further
                    c = carry + max(prev - s, 0)
                feat, kern = unit_reach(s, self.config["layers"], pre, c)
                x = max(x + r, kern)
                carry, prev = feat, s
        return x

    def branch_inputs(
        self, ms_up: torch.Tensor, pan: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(Y, P) of the original, HE and HP branches (Fig. 8)."""
        he_ms, he_pan = self.sample_tables or (self.he_ms, self.he_pan)
        return [
            (ms_up, pan),
            (apply_tables(ms_up, he_ms), apply_tables(pan, he_pan)),
            (high_pass(ms_up), high_pass(pan)),
        ]

    def forward(self, ms_up: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        self.check_inputs(ms_up, pan)
        hw = (ms_up.shape[-2], ms_up.shape[-1])
        x, carry = ms_up, None
        for (y_b, p_b), units in zip(self.branch_inputs(ms_up, pan), self.units, strict=True):
            for s, unit in zip(self.scales, units, strict=True):
                y_s, p_s = y_b[..., ::s, ::s], p_b[..., ::s, ::s]
                shape = (y_s.shape[-2], y_s.shape[-1])
                c = None
                if carry is not None:
                    c = tuple(_resample(t, carry[2], s, shape) for t in carry[:2])
                h_y, h_p = unit.features(y_s, p_s, c)
                k_y, k_p = (_upsample(t, s, hw) for t in unit.kernels(h_y, h_p))
                x = predictive_filter(x, k_y, self.kernel) + predictive_filter(
                    pan, k_p, self.kernel
                )
                carry = (h_y, h_p, s)
        return x + ms_up if self.residual else x
