"""How a training run sets its network up before the first step.

Three things a network can ask of the data before it trains, kept out of the loop
(:mod:`models.deep.train`): constructor arguments from the sensor's physics (OTPNet's
degradation and spectral operators), a warm start from other weights (``--init``: the
ratio-4 set from the Landsat 8 weights), and equalisation statistics of the training
data (PreMix-H's histogram-equalisation branch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from errors import OptionError
from models.deep.card import read_card
from models.deep.sampler import WindowSampler
from models.deep.weights import check_tensors, load_state
from models.registry import create_model
from physics.sensors import Sensor

#: Random training windows of each scene whose values make its equalisation histograms.
HISTOGRAM_WINDOWS = 64  # 262,144 values per band and scene at patch 64, ~1000 per bin


def physics_kwargs(entry: Any, sensor: Sensor, ratio: int, n_bands: int) -> dict[str, Any]:
    """Constructor arguments a physics-based network takes from the sensor and ratio
    (registry ``extra["physics"]``: OTPNet's D and S operators): ratio, the MTF Nyquist
    gains and the pseudo-PAN weights, written into the card with the other kwargs."""
    if not entry.info.extra.get("physics"):
        return {}
    return {
        "ratio": int(ratio),
        "gains": [float(g) for g in sensor.gains(n_bands)],
        "band_weights": [float(w) for w in sensor.band_weights(n_bands)],
    }


def initial_model(
    model_name: str, n_bands: int, kwargs: dict[str, Any], init: Path | str | None
) -> torch.nn.Module:
    """A new network, or one warm-started from ``init`` (its architecture kwargs, with
    this run's band count and physics; tensors checked before they are copied)."""
    if init is None:
        return create_model(model_name, n_bands=n_bands, **kwargs)
    card0 = read_card(init)
    if card0.model != model_name:
        raise OptionError(
            f"--init {init} holds {card0.model!r} weights, not {model_name!r}: "
            f"pass {model_name} weights or run with -m {card0.model}"
        )
    model = create_model(model_name, **{**card0.kwargs, **kwargs, "n_bands": n_bands})
    tensors, _ = load_state(init)
    staged = hasattr(model, "warm_start")
    from_stage, to_stage = int(card0.kwargs.get("stage", 0)), int(model.config.get("stage", 0))
    if staged and from_stage < to_stage:
        # a later stage from an earlier one: its own additions keep their initialisation
        for name, t in tensors.items():
            if not torch.isfinite(t).all():
                raise OptionError(f"--init {init}: tensor {name} holds NaN or Inf")
        try:
            model.warm_start(tensors)
        except ValueError as exc:
            raise OptionError(f"--init {init}: {exc}") from None
        return model
    if staged and from_stage > to_stage:
        # an earlier stage from a later one's file (ratio 4 from Landsat 8): its prior part
        own = model.state_dict()
        tensors = {k: v for k, v in tensors.items() if k in own}
    check_tensors(tensors, model, init, model_name)
    model.load_state_dict(tensors)
    return model


def training_histograms(
    sources: Sequence[Any], areas: Sequence[Any], patch: int, seed: int, model: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Equalisation statistics of each training scene: :func:`models.deep.method.
    value_histograms` summed over HISTOGRAM_WINDOWS random windows of that scene's
    training areas, (S, B, bins) and (S, bins) for the S sources (zeros for a scene
    without a training area), drawn with their own generator (the training sequence of
    windows is not disturbed). The pooled statistics are their sum over scenes."""
    from models.deep.method import value_histograms

    bins = int(model.equalisation_bins)
    n_bands = int(sources[0].n_bands)
    ms_h = np.zeros((len(sources), n_bands, bins), np.int64)
    pan_h = np.zeros((len(sources), bins), np.int64)
    for s in sorted({int(i) for i, _ in areas}):
        rng = np.random.default_rng([seed, 0x4845, s])  # "HE"
        draws = WindowSampler(sources, [a for a in areas if int(a[0]) == s], patch, rng)
        ms_up, pan, _ = draws.batch(HISTOGRAM_WINDOWS)
        for m, p in zip(ms_up, pan, strict=True):
            a, b = value_histograms(m, p[0], None, bins)
            ms_h[s] += a
            pan_h[s] += b
    return ms_h, pan_h
