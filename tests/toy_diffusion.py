"""A toy diffusion model for the tests: a small conditional denoiser, registered for a test.

The denoiser is three 3x3 convolutions (so a per-step halo of 3 PAN pixels) over
``[x_t, ms_up, pan]``, with the timestep entering as a per-channel bias: a sinusoidal
embedding of ``t`` (Vaswani et al. 2017, sec. 3.5; the DDPM network's, Ho et al. 2020)
through one linear layer, added after the first convolution. Nothing in it pools, so it
is strictly local and tiled sampling must agree with whole-image sampling. It predicts
``x0`` (the residual over ``ms_up``) rather than ``epsilon``: an untrained epsilon
network's ``x0_hat = (x_T - sqrt(1 - a) eps) / sqrt(a)`` at the first trailing step
(``a ~ 4e-5``) is ~150 x the noise, while a random ``x0`` network's output stays near its
init scale, so the toy's images keep plausible magnitudes (the epsilon branch of the
sampler is tested in tests/test_iterative_ddim.py).

It is never registered in the shipped registry: :func:`registered_toy` registers
``toy-diffusion`` with :func:`models.iterative.method.register_diffusion`, writes seeded
random-init weights with a card (so runs load it through the real ``--weights`` path)
and unregisters it on exit; the ``toy_diffusion`` fixture wraps it for one test.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from models.deep.common import PansharpNet, conv
from models.iterative.method import SamplerConfig, register_diffusion
from models.registry import ModelInfo, unregister_model

TOY_NAME = "toy-diffusion"
TOY_STEPS = 4
TOY_ETA = 1.0  # ancestral noise at every step: the per-step positional noise is exercised
TOY_PREDICTION = "x0"
TOY_LAYERS = 3  # 3x3 convolutions: per-step halo


class ToyDenoiser(PansharpNet):
    """``forward(x_t, t, ms_up, pan) -> x0`` (N, B, H, W); see the module docstring."""

    name = TOY_NAME

    def __init__(self, n_bands: int, channels: int = 8) -> None:
        super().__init__(n_bands, channels=int(channels))
        self.first = conv(2 * n_bands + 1, channels, 3)
        self.middle = conv(channels, channels, 3)
        self.last = conv(channels, n_bands, 3)
        self.embed = nn.Linear(channels, channels)
        half = channels // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    @property
    def halo(self) -> int:
        return TOY_LAYERS

    def time_bias(self, t: torch.Tensor) -> torch.Tensor:
        """(N, C, 1, 1): ``Linear([sin(t f_k), cos(t f_k)])``, ``f_k = 10000^(-k / (C/2))``."""
        arg = t.to(torch.float32)[:, None] * self.freqs[None, :]
        feats = torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)
        return self.embed(feats)[:, :, None, None]

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, ms_up: torch.Tensor, pan: torch.Tensor
    ) -> torch.Tensor:
        self.check_inputs(ms_up, pan)
        h = F.silu(self.first(torch.cat([x_t, ms_up, pan], dim=1)) + self.time_bias(t))
        h = F.silu(self.middle(h))
        return self.last(h)


def toy_info() -> ModelInfo:
    """The toy's record; ``halo`` is the denoiser's per step (register_diffusion widens it)."""
    return ModelInfo(
        name=TOY_NAME,
        title="toy conditional DDIM denoiser (tests only)",
        family="diffusion",
        reference="tests/toy_diffusion.py",
        halo=lambda ratio: TOY_LAYERS,
        normalisation="divide by the card's scale; the residual over ms_up is sampled",
    )


def create_toy(n_bands: int, **kwargs: Any) -> ToyDenoiser:
    return ToyDenoiser(n_bands=n_bands, **kwargs)


@dataclass(frozen=True)
class Toy:
    """The registered toy: its ``-m`` name, its weights file, its sampler."""

    name: str
    weights: Path
    sampler: SamplerConfig
    record: ModelInfo


def write_toy_weights(
    path: Path, n_bands: int = 4, ratio: int = 4, sensor: str = "generic", seed: int = 0
) -> Path:
    """Seeded random-init toy weights with a 16-bit card for a synthetic scene."""
    from tests.diffusion_weights import save_synthetic

    torch.manual_seed(seed)
    return save_synthetic(path, ToyDenoiser(n_bands), TOY_NAME, ratio, sensor)


@contextmanager
def registered_toy(
    folder: Path, steps: int = TOY_STEPS, eta: float = TOY_ETA, n_bands: int = 4, ratio: int = 4
) -> Iterator[Toy]:
    """``toy-diffusion`` in the registry (and its weights in ``folder``) while inside."""
    sampler = SamplerConfig(
        steps=steps, schedule="linear", T=1000, eta=eta, prediction=TOY_PREDICTION
    )
    record = register_diffusion(toy_info(), create_toy, sampler)
    try:
        weights = write_toy_weights(folder / "toy.safetensors", n_bands=n_bands, ratio=ratio)
        yield Toy(TOY_NAME, weights, sampler, record)
    finally:
        unregister_model(TOY_NAME)


@pytest.fixture(name="toy_diffusion")
def toy_diffusion_fixture(tmp_path: Path) -> Iterator[Toy]:
    """``toy-diffusion`` (4 DDIM steps) registered for one test, unregistered after it."""
    with registered_toy(tmp_path) as toy:
        yield toy
