"""PanNet: a deep network architecture for pan-sharpening (Yang, Fu, Hu, Huang, Ding &
Paisley, ICCV 2017).

Two domain-specific ideas: (1) spectral preservation - the interpolated MS is added to
the network output, so the network only learns the missing detail; (2) spatial
preservation - the network sees only the high-pass content of its inputs (each image
minus its 5x5 box blur), which makes it insensitive to the radiometry of the training
sensor and helps it generalise. Body: a 3x3 conv to 32 maps, 4 ResNet blocks (two 3x3
convs of 32 maps each), a 3x3 conv to B bands: 10 conv layers.

Difference from the paper: PanNet high-passes the low-resolution MS and upsamples it
with a learned transposed convolution tied to ratio 4. Here the high-pass is taken on
``ms_up`` (the 23-tap EXP the engine already computed), which keeps the network
ratio-agnostic (Landsat's ratio 2) and removes that deconvolution from the count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.deep.common import PansharpNet, ResBlock, conv


def high_pass(x: torch.Tensor, box: int) -> torch.Tensor:
    """x minus its ``box`` x ``box`` mean (reflected borders, as OpenCV's ``blur``)."""
    r = box // 2
    low = F.avg_pool2d(F.pad(x, (r, r, r, r), mode="reflect"), box, stride=1)
    return x - low


class PanNet(PansharpNet):
    """PanNet; ``channels``, ``n_blocks`` and ``box`` default to the published values."""

    name = "pannet"
    #: where the fused features meet the head to bands (models.deep.tailor)
    split_points = ("tail",)

    def __init__(self, n_bands: int, channels: int = 32, n_blocks: int = 4, box: int = 5) -> None:
        if box % 2 == 0:
            raise ValueError(f"PanNet's high-pass box must be odd, got {box}")
        super().__init__(n_bands, channels=int(channels), n_blocks=int(n_blocks), box=int(box))
        self.head = nn.Sequential(conv(n_bands + 1, channels, 3), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*(ResBlock(channels) for _ in range(n_blocks)))
        self.tail = conv(channels, n_bands, 3)

    @property
    def halo(self) -> int:
        return self.config["box"] // 2 + 2 + 2 * self.config["n_blocks"]

    def forward(self, ms_up: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        self.check_inputs(ms_up, pan)
        box = self.config["box"]
        x = torch.cat([high_pass(pan, box), high_pass(ms_up, box)], dim=1)
        return ms_up + self.tail(self.blocks(self.head(x)))
