"""Small seeded weights of every registered diffusion model, for the tests.

Each model gets a reduced configuration (:data:`SMALL`: a few channels, 28-pixel windows
with 7-pixel ramps: a halo of 28 fits ``--tile 128``) built at its final stage; the
parameters that start at zero by design (LoRA's ``B``, the adapters' last convolution,
KSDiff's core MLP head) get small seeded values so that the stage-2 paths are
exercised. Written with a 16-bit card through the real ``--weights`` path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models.deep.weights import card_for, save_weights
from models.registry import create_model

SMALL: dict[str, dict[str, Any]] = {
    "nodiff": {"width": 8, "layers": 2, "modes": 4, "window": 28, "window_ramp": 7,
               "lora_rank": 2, "residual_gain": 10.0},
    "ksdiff": {"width": 8, "mid_blocks": 1, "latent": 8, "tokens_side": 2, "window": 28,
               "window_ramp": 7, "train_steps": 2},
}  # fmt: skip
SCALE = 65535.0


def small_model(name: str, n_bands: int = 4, stage: int = 2, seed: int = 0) -> Any:
    """The reduced network, seeded, its zero-initialised parameters made non-zero."""
    torch.manual_seed(seed)
    model = create_model(name, n_bands=n_bands, stage=stage, **SMALL[name])
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() and not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def write_weights(
    name: str,
    path: Path,
    n_bands: int = 4,
    ratio: int = 4,
    stage: int = 2,
    seed: int = 0,
    sensor: str = "generic",
) -> Path:
    """:func:`small_model` saved with a 16-bit card for a synthetic scene."""
    return save_synthetic(path, small_model(name, n_bands, stage, seed), name, ratio, sensor)


def save_synthetic(path: Path, model: Any, name: str, ratio: int, sensor: str) -> Path:
    """``model`` saved as ``name``'s weights with the card of a synthetic 16-bit scene
    (bands ``b1..bN``, DN / 65535)."""
    card = card_for(
        model,
        name,
        sensor=sensor,
        band_names=[f"b{i + 1}" for i in range(model.n_bands)],
        ratio=ratio,
        bit_depth=16,
        scale=SCALE,
    )
    return save_weights(path, model, card)
