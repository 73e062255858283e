"""Iterative (diffusion) models: noise schedules, the DDIM step rule, positional noise,
and their place in the method protocol (:mod:`models.iterative.method`).

Why the names are looked up lazily (PEP 562 module ``__getattr__``): a module that
registers a diffusion model imports :func:`models.iterative.method.register_diffusion`
when the registry loads, i.e. for ``pansharp models`` and every CLI start, and that must
stay torch-free (~3 s, ~280 MB); the DDIM rule and the positional noise import torch,
so they are imported on first access only. ``from models.iterative import X`` works for
every name of ``__all__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.iterative.ddim import DDIMScheduler, trailing_timesteps
    from models.iterative.method import DiffusionModel, SamplerConfig, register_diffusion
    from models.iterative.noise import positional_noise
    from models.iterative.schedules import NoiseSchedule, make_schedule

_HOMES = {
    "DDIMScheduler": "models.iterative.ddim",
    "trailing_timesteps": "models.iterative.ddim",
    "positional_noise": "models.iterative.noise",
    "NoiseSchedule": "models.iterative.schedules",
    "make_schedule": "models.iterative.schedules",
    "DiffusionModel": "models.iterative.method",
    "SamplerConfig": "models.iterative.method",
    "register_diffusion": "models.iterative.method",
}

__all__ = [
    "DDIMScheduler",
    "DiffusionModel",
    "NoiseSchedule",
    "SamplerConfig",
    "make_schedule",
    "positional_noise",
    "register_diffusion",
    "trailing_timesteps",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
