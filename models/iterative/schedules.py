"""Noise schedules for diffusion models: the cumulative signal fraction ``alphas_cumprod``.

A schedule fixes, for each of ``T`` forward-diffusion steps ``t = 0 .. T-1`` (index ``t``
is step ``t + 1`` of the papers, whose steps run ``1 .. T``), the variance ``beta_t`` of
the noise added at that step and the cumulative product

    alpha_bar_t = prod_{s <= t} (1 - beta_s),

so that ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` (Ho et al. 2020,
"Denoising Diffusion Probabilistic Models", eq. 4). Two schedules are provided:

* ``linear``: ``beta`` linear from 1e-4 to 0.02 over the T steps (Ho et al. 2020, sec. 4,
  chosen there for T = 1000 and used as given for any T, as diffusers does);
* ``cosine``: ``alpha_bar(t) = f(t) / f(0)``, ``f(t) = cos^2(((t / T + s) / (1 + s)) pi / 2)``
  with ``s = 0.008`` (Nichol & Dhariwal 2021, "Improved DDPM", eq. 17), realised through
  ``beta_t = min(1 - alpha_bar(t) / alpha_bar(t - 1), 0.999)`` so the last step (where
  ``f(T) = 0``) keeps a positive ``alpha_bar`` instead of a singular one.

Everything is float64 numpy; no torch is needed to build a schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from errors import OptionError, unknown_name

KINDS = ("linear", "cosine")
LINEAR_BETA_START = 1e-4
LINEAR_BETA_END = 0.02
COSINE_S = 0.008
COSINE_MAX_BETA = 0.999


@dataclass(frozen=True)
class NoiseSchedule:
    """``T`` steps of one schedule ``kind``; ``alphas_cumprod[t]`` is ``alpha_bar`` at index t.

    ``alphas_cumprod`` is a tuple of floats (hashable, immutable) strictly decreasing in
    ``(0, 1)``; :attr:`array` gives it as a read-only float64 array.
    """

    T: int
    kind: str
    alphas_cumprod: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.alphas_cumprod) != self.T:
            raise OptionError(
                f"NoiseSchedule: alphas_cumprod has {len(self.alphas_cumprod)} values "
                f"for T={self.T}; build it with make_schedule(kind, T)"
            )

    @property
    def array(self) -> np.ndarray:
        """``alphas_cumprod`` as a read-only float64 array of shape (T,)."""
        a = np.asarray(self.alphas_cumprod, dtype=np.float64)
        a.setflags(write=False)
        return a

    @property
    def betas(self) -> np.ndarray:
        """Per-step variances ``beta_t = 1 - a_t / a_{t-1}`` (``a = alpha_bar``, ``a_{-1} = 1``)."""
        a = self.array
        return 1.0 - a / np.concatenate(([1.0], a[:-1]))


def linear_betas(T: int) -> np.ndarray:
    """Ho et al. 2020: ``beta_t`` evenly spaced from 1e-4 to 0.02 over T steps."""
    return np.linspace(LINEAR_BETA_START, LINEAR_BETA_END, T, dtype=np.float64)


def cosine_alpha_bar(t: np.ndarray | float, T: int, s: float = COSINE_S) -> np.ndarray:
    """Nichol & Dhariwal 2021 eq. 17, unclipped: ``f(t) / f(0)`` for continuous t in [0, T]."""
    t = np.asarray(t, dtype=np.float64)

    def f(u: np.ndarray | float) -> np.ndarray:
        return np.cos((np.asarray(u) / T + s) / (1.0 + s) * math.pi / 2.0) ** 2

    return f(t) / f(0.0)


def cosine_betas(T: int) -> np.ndarray:
    """``beta_t = min(1 - alpha_bar(t+1) / alpha_bar(t), 0.999)`` for index t = 0 .. T-1."""
    ab = cosine_alpha_bar(np.arange(T + 1), T)
    return np.minimum(1.0 - ab[1:] / ab[:-1], COSINE_MAX_BETA)


def make_schedule(kind: str, T: int) -> NoiseSchedule:
    """Build the ``kind`` schedule (``linear`` or ``cosine``) for ``T`` >= 1 steps."""
    if kind not in KINDS:
        raise unknown_name("noise schedule", str(kind), list(KINDS), "make_schedule(kind=...)")
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise OptionError(f"make_schedule: T must be an integer >= 1, got {T!r}")
    T = int(T)
    betas = linear_betas(T) if kind == "linear" else cosine_betas(T)
    alphas_cumprod = np.cumprod(1.0 - betas)
    return NoiseSchedule(T=T, kind=kind, alphas_cumprod=tuple(float(v) for v in alphas_cumprod))
