"""KSDiff's latent standardisation (models/deep/ksdiff_parts.py): the latent must vary
across windows, so each entry is standardised across a batch of windows while training
and by running averages at inference; the first shipped files' per-token layer norm
still loads."""

from __future__ import annotations

import pytest
import torch

from models.deep.ksdiff import KSDiff
from models.deep.ksdiff_parts import PLFE, LatentStandardise


def _windows(n: int, seed: int, bands: int = 3, side: int = 16):
    """Windows of differing content at the level of DN / 255 crops: a level near 0.3, a
    stripe pattern of random frequency and direction, band gains around one, noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    level = 0.3 + 0.02 * torch.rand(n, 1, 1, 1, generator=g)
    freq = 0.2 + 1.0 * torch.rand(n, 1, 1, 1, generator=g)
    angle = 3.1416 * torch.rand(n, 1, 1, 1, generator=g)
    amp = 0.005 + 0.03 * torch.rand(n, 1, 1, 1, generator=g)
    phase = freq * (xx * torch.cos(angle) + yy * torch.sin(angle))
    pan = level + amp * torch.sin(phase) + 0.002 * torch.randn(n, 1, side, side, generator=g)
    gains = 0.8 + 0.4 * torch.rand(n, bands, 1, 1, generator=g)
    ms = gains * pan + 0.002 * torch.randn(n, bands, side, side, generator=g)
    return pan, ms


def test_standardise_uses_batch_statistics_then_running_ones():
    norm = LatentStandardise(5)
    g = torch.Generator().manual_seed(0)
    x = 3.0 + 0.5 * torch.randn(8, 5, generator=g)
    y = norm(x)
    assert torch.allclose(y.mean(0), torch.zeros(5), atol=1e-4)
    assert torch.allclose(y.std(0, unbiased=False), torch.ones(5), atol=1e-2)
    for _ in range(200):
        norm(3.0 + 0.5 * torch.randn(8, 5, generator=g))
    assert torch.allclose(norm.running_mean, torch.full((5,), 3.0), atol=0.1)
    assert torch.allclose(norm.running_var.sqrt(), torch.full((5,), 0.5), rtol=0.2)
    norm.eval()
    one = norm(x[:1])  # evaluation: running averages, any batch size
    assert torch.allclose(norm(x)[:1], one)
    norm.train()
    before = norm.running_mean.clone()
    assert torch.allclose(norm(x[:1]), one)  # a batch of one cannot measure a spread
    assert torch.equal(norm.running_mean, before)


def test_plfe_latent_spreads_across_windows_where_layer_norm_collapses():
    """The collapse the first files had: with per-token layer norm, windows that differ
    by a few hundredths give nearly the same latent; standardised per entry across
    windows, the same windows give a unit spread, in evaluation mode too once the
    running averages have seen such windows."""
    torch.manual_seed(0)
    layer = PLFE([1, 3], 3, 8, 6, tokens_side=2, norm="layer").eval()
    torch.manual_seed(0)
    batch = PLFE([1, 3], 3, 8, 6, tokens_side=2, norm="batch")
    pan, ms = _windows(8, seed=1)
    with torch.no_grad():
        collapsed = layer([pan, ms], ms).std(0).mean()
        # in units of the PAN's contrast the content moves the tokens themselves
        raw_layer = layer.raw_latent([pan, ms], ms).std(0).mean()
        raw_batch = batch.raw_latent([pan, ms], ms).std(0).mean()
        for seed in range(2, 40):
            p, m = _windows(8, seed=seed)
            batch([p, m], m)
        batch.eval()
        spread = batch([pan, ms], ms).std(0).mean()
    assert collapsed < 0.1
    assert raw_batch > 10 * raw_layer
    assert 0.5 < spread < 2.0


def test_latent_norm_is_checked_and_recorded():
    with pytest.raises(ValueError, match="latent_norm must be one of batch, layer"):
        KSDiff(n_bands=3, latent_norm="group")
    assert KSDiff(n_bands=3).config["latent_norm"] == "batch"
    old = KSDiff(n_bands=3, latent_norm="layer")
    assert not any("norm.running" in k for k in old.state_dict())


def test_stage_two_keeps_the_prior_in_evaluation_mode():
    model = KSDiff(n_bands=3, stage=2, width=8, latent=6, tokens_side=2, mid_blocks=1)
    model.train()
    assert model.training and model.plfe2.training and not model.plfe1.training
    model.eval()
    assert not model.plfe2.training
    stage1 = KSDiff(n_bands=3, stage=1, width=8, latent=6, tokens_side=2, mid_blocks=1)
    assert stage1.train().plfe1.training
