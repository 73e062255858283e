"""FusionNet (Deng, Vivone, Jin, Chanussot, "Detail injection-based deep convolutional
neural networks for pansharpening", IEEE TGRS 59(8):6995-7010, 2021; online 2020).

Deng et al. bring the classical detail extraction into the network's input: the PAN
replicated over the B bands minus the interpolated MS is exactly the detail a CS/MRA
method would inject, so the network starts from it instead of from raw images, and its
output (estimated injected details) is added to the interpolated MS. Body: a 3x3 conv
to 32 maps with ReLU, 4 ResBlocks of 32 maps, a 3x3 conv to the B bands.
"""

from __future__ import annotations

import torch
from torch import nn

from models.deep.common import PansharpNet, ResBlock, conv


class FusionNet(PansharpNet):
    """FusionNet; ``channels`` and ``n_blocks`` default to the published 32 and 4."""

    name = "fusionnet"
    #: where the fused features meet the head to bands (models.deep.tailor)
    split_points = ("tail",)

    def __init__(self, n_bands: int, channels: int = 32, n_blocks: int = 4) -> None:
        super().__init__(n_bands, channels=int(channels), n_blocks=int(n_blocks))
        self.head = nn.Sequential(conv(n_bands, channels, 3), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*(ResBlock(channels) for _ in range(n_blocks)))
        self.tail = conv(channels, n_bands, 3)

    @property
    def halo(self) -> int:
        return 2 + 2 * self.config["n_blocks"]

    def forward(self, ms_up: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        self.check_inputs(ms_up, pan)
        details = pan.expand_as(ms_up) - ms_up
        return ms_up + self.tail(self.blocks(self.head(details)))
