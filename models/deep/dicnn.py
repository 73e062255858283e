"""DiCNN1: detail-injection CNN (He, Rao, Li, Chanussot, Plaza, Zhu & Li, "Pansharpening
via detail injection based convolutional neural networks", IEEE JSTARS 12(4):1188-1204,
2019; arXiv:1806.08898).

He et al. read CNN pansharpening as the classical detail-injection model
F = MS_up + g(MS_up, PAN): the network only estimates the details, and the interpolated
MS is added back through a skip connection. This residual form converges much faster
and keeps the spectra of the MS, unlike PNN which must rebuild the whole image.
DiCNN1 feeds the MS stacked with the PAN to three 3x3 convs (64, 64, B maps; ReLU
between).
"""

from __future__ import annotations

import torch
from torch import nn

from models.deep.common import PansharpNet, conv


class DiCNN(PansharpNet):
    """DiCNN1; ``channels`` and ``n_layers`` default to the published 64 and 3."""

    name = "dicnn"
    #: where the fused features meet the head to bands (models.deep.tailor)
    split_points = ("body.4",)

    def __init__(self, n_bands: int, channels: int = 64, n_layers: int = 3) -> None:
        if n_layers < 2:
            raise ValueError(f"DiCNN needs at least 2 layers, got {n_layers}")
        super().__init__(n_bands, channels=int(channels), n_layers=int(n_layers))
        widths = [n_bands + 1] + [channels] * (n_layers - 1) + [n_bands]
        layers: list[nn.Module] = []
        for i in range(n_layers):
            layers.append(conv(widths[i], widths[i + 1], 3))
            if i < n_layers - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    @property
    def halo(self) -> int:
        return self.config["n_layers"]

    def forward(self, ms_up: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        self.check_inputs(ms_up, pan)
        return ms_up + self.body(torch.cat([ms_up, pan], dim=1))
