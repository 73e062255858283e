"""Iterative (diffusion) models: noise schedules, the DDIM step rule, positional noise.

Importing this package imports torch; nothing in :mod:`models` imports it, so the
classical methods and the CLI's start-up stay torch-free until an iterative model is
asked for.
"""

from __future__ import annotations

from models.iterative.ddim import DDIMScheduler, trailing_timesteps
from models.iterative.noise import positional_noise
from models.iterative.schedules import NoiseSchedule, make_schedule

__all__ = [
    "DDIMScheduler",
    "NoiseSchedule",
    "make_schedule",
    "positional_noise",
    "trailing_timesteps",
]
