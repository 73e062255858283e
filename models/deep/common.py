"""Pieces every deep network shares: the base class, input checks, parameter counts.

All networks follow one calling convention so the tiling engine, training and tests can
treat them alike: ``net(ms_up, pan) -> (N, B, H, W)`` where ``ms_up`` is the MS already
interpolated onto the PAN grid (the toolbox's 23-tap EXP, :func:`physics.resample.interp23`)
and ``pan`` is (N, 1, H, W), both normalised by ``2^bit_depth - 1``. Interpolating
outside the network (rather than with a learned transposed convolution, as some papers
do) keeps every network ratio-agnostic and lets the engine hand it the same tiles as
the classical methods.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class PansharpNet(nn.Module):
    """Base class: stores the constructor kwargs (``config``) written into the weights card.

    ``config`` holds only JSON-compatible values, so ``type(net)(**config)`` rebuilds the
    network from a card (:func:`models.deep.weights.load_weights`).
    """

    name: str = ""
    #: The network also takes ``lr``, the MS samples, as ``net(ms_up, pan, lr)``
    #: (physics-based data terms, e.g. OTPNet's D operator).
    needs_lowres: bool = False
    #: Patches start on the MS sample lattice: sample (i, j) on patch pixel (r i, r j).
    ratio_aligned: bool = False
    #: Patches start a multiple of this many pixels apart (nearest-neighbour pyramids).
    lattice: int = 1
    #: > 0: the network equalises its inputs with scene-wide histograms of that many
    #: bins over [0, 1], set by ``set_equalisation(ms_hist, pan_hist)`` from the scene
    #: (fuse's prepare) or the training data (train): a patch's result then does not
    #: depend on the patch plan (PreMix-H).
    equalisation_bins: int = 0
    #: modules whose input is the fused features, before they are mapped to the bands:
    #: where test-time adaptation inserts its tailors (models.deep.tailor)
    split_points: tuple[str, ...] = ()

    def __init__(self, n_bands: int, **config: Any) -> None:
        super().__init__()
        if int(n_bands) < 1:
            raise ValueError(f"n_bands must be >= 1, got {n_bands}")
        self.n_bands = int(n_bands)
        self.config: dict[str, Any] = {"n_bands": self.n_bands, **config}

    @property
    def halo(self) -> int:  # pragma: no cover - every subclass overrides
        """Receptive-field half-width in PAN pixels of this configuration."""
        raise NotImplementedError

    def check_inputs(self, ms_up: torch.Tensor, pan: torch.Tensor) -> None:
        """Fail early, naming the shapes, rather than deep inside a convolution."""
        if ms_up.ndim != 4 or pan.ndim != 4:
            raise ValueError(
                f"{self.name}: expected ms_up (N, B, H, W) and pan (N, 1, H, W), "
                f"got {tuple(ms_up.shape)} and {tuple(pan.shape)}"
            )
        n, b, h, w = ms_up.shape
        if b != self.n_bands:
            raise ValueError(f"{self.name}: built for {self.n_bands} bands, ms_up has {b}")
        if tuple(pan.shape) != (n, 1, h, w):
            raise ValueError(
                f"{self.name}: pan must be {(n, 1, h, w)} to match ms_up, got {tuple(pan.shape)}"
            )


def conv(c_in: int, c_out: int, k: int, bias: bool = True) -> nn.Conv2d:
    """k x k convolution with "same" zero padding (the output stays on the PAN grid)."""
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias)


class ResBlock(nn.Module):
    """conv-ReLU-conv plus identity, the block of PanNet and FusionNet (He et al. CVPR 2016)."""

    def __init__(self, channels: int, k: int = 3) -> None:
        super().__init__()
        self.conv1 = conv(channels, channels, k)
        self.conv2 = conv(channels, channels, k)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (the registry's ``params``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
