"""PNN: pansharpening by a 3-layer CNN (Masi, Cozzolino, Verdoliva & Scarpa, Remote
Sensing 8(7):594, 2016).

The first CNN for pansharpening, adapted from SRCNN: the interpolated MS stacked with
the PAN goes through a 9x9 conv (64 maps), a 5x5 conv (32 maps) and a 5x5 conv to the B
output bands, ReLU between. It predicts the fused image directly (no skip connection),
as published. Differences from the paper, for the tiling engine: "same" zero padding
instead of valid convolutions, so the output stays on the PAN grid (the engine's halo
of 8 pixels absorbs the border effect); the optional radiometric-index input planes of
the paper are not used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.deep.common import PansharpNet, conv


class PNN(PansharpNet):
    """PNN with configurable widths and kernel sizes; defaults are the published ones."""

    name = "pnn"
    #: where the fused features meet the head to bands (models.deep.tailor)
    split_points = ("body.4",)

    def __init__(
        self,
        n_bands: int,
        channels: Sequence[int] = (64, 32),
        kernels: Sequence[int] = (9, 5, 5),
    ) -> None:
        channels = [int(c) for c in channels]
        kernels = [int(k) for k in kernels]
        if len(kernels) != len(channels) + 1 or any(k % 2 == 0 for k in kernels):
            raise ValueError(
                f"PNN needs len(kernels) == len(channels) + 1 odd kernels, got {kernels}"
            )
        super().__init__(n_bands, channels=channels, kernels=kernels)
        widths = [n_bands + 1, *channels, n_bands]
        layers: list[nn.Module] = []
        for i, k in enumerate(kernels):
            layers.append(conv(widths[i], widths[i + 1], k))
            if i < len(kernels) - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    @property
    def halo(self) -> int:
        return sum(k // 2 for k in self.config["kernels"])

    def forward(self, ms_up: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        self.check_inputs(ms_up, pan)
        return self.body(torch.cat([ms_up, pan], dim=1))
