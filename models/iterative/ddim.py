"""The DDIM update rule, kept apart from any network (Song, Meng & Ermon 2021, ICLR).

With ``a_t = alpha_bar_t`` (see :mod:`models.iterative.schedules`) and a network output
that is either the noise ``eps`` or the clean image ``x0``, one step from ``x_t`` to the
previous retained step ``x_p`` of the sub-sequence is eq. 12 of the paper:

    x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)
    x_p    = sqrt(a_p) x0_hat + sqrt(1 - a_p - sigma_t^2) eps + sigma_t z,    z ~ N(0, I)

    sigma_t = eta * sqrt((1 - a_p) / (1 - a_t)) * sqrt(1 - a_t / a_p)          (eq. 16)

``eta = 0`` is the deterministic DDIM sampler; ``eta = 1`` with every step retained is
the DDPM ancestral sampler (``sigma_t^2`` is then the posterior variance
``(1 - a_{t-1}) / (1 - a_t) beta_t`` of Ho et al. 2020, eq. 7). After the last retained
step (``t = 0``) ``a_p = 1`` (diffusers' ``set_alpha_to_one``), so the final output is
``x0_hat`` itself. With ``prediction="x0"`` the network predicts ``x0`` and
``eps = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t)`` is derived; ``1 - a_t > 0`` for every t
because ``beta_0 > 0``.

The noise ``z`` is never drawn here: the caller passes it (``noise=``), so tiled
inference can use noise that is a function of pixel position
(:func:`models.iterative.noise.positional_noise`) and every tile split agrees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from errors import OptionError, unknown_name
from models.iterative.schedules import NoiseSchedule

PREDICTIONS = ("epsilon", "x0")


def trailing_timesteps(T: int, steps: int) -> tuple[int, ...]:
    """``steps`` of the ``T`` indices, evenly spaced, descending, starting at ``T - 1``.

    ``t_i = T - 1 - floor(i T / steps)`` for ``i = 0 .. steps-1``: the "trailing" spacing
    (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
    table 2), which always starts at the noisiest step, so sampling from pure noise
    ``x_T`` is consistent for any ``steps``; ``steps = T`` gives every index. Spacing is
    ``T / steps >= 1``, so the indices are distinct.
    """
    return tuple(T - 1 - (i * T) // steps for i in range(steps))


def first_timestep(schedule: NoiseSchedule, start_alpha_bar: float | None) -> int:
    """Where sampling from ``x ~ N(0, I)`` begins: ``T - 1``, or with ``start_alpha_bar``
    the last step whose ``alpha_bar`` is at least that.

    Why an epsilon network needs the second: its clean estimate is
    ``x0_hat = (x_t - sqrt(1 - a_t) eps_hat) / sqrt(a_t)``, so the network's error on
    ``eps`` reaches ``x0_hat`` times ``sqrt((1 - a_t) / a_t)``: 640 at the last cosine
    step of T = 1000 (``a = 2.4e-6``), 6.4 at ``a = 0.024`` (step 899). Starting there
    from pure noise ignores the signal's share ``sqrt(a) = 0.155`` of ``x_t`` (the
    non-zero terminal SNR Lin et al. 2024 discuss), a far smaller error: NODiff's
    Landsat 8 weights gave L1 0.0217 from step 999 and 0.0022 from step 900, 10 steps,
    16 Wald training patches (an ad-hoc probe, not a benchmark script).
    """
    if start_alpha_bar is None:
        return schedule.T - 1
    a = schedule.array
    ok = np.nonzero(a >= float(start_alpha_bar))[0]
    if ok.size == 0:
        raise OptionError(
            f"start_alpha_bar={start_alpha_bar} is above every step's alpha_bar "
            f"(largest {a[0]:.4g})"
        )
    return int(ok[-1])


class DDIMScheduler:
    """DDIM over ``steps`` of ``schedule.T`` diffusion steps; see the module docstring.

    ``timesteps`` is the descending sub-sequence; :meth:`step` maps ``x_t`` at one of
    them to the next (or to ``x0_hat`` after ``t = 0``); :meth:`add_noise` is the forward
    process for training; :meth:`sample` runs the whole loop.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        steps: int,
        eta: float = 0.0,
        prediction: str = "epsilon",
        clip_sample: float | None = None,
        start_alpha_bar: float | None = None,
    ) -> None:
        if not isinstance(schedule, NoiseSchedule):
            raise OptionError(
                f"DDIMScheduler: schedule must be a NoiseSchedule (make_schedule), "
                f"got {type(schedule).__name__}"
            )
        if (
            isinstance(steps, bool)
            or not isinstance(steps, (int, np.integer))
            or not 1 <= steps <= schedule.T
        ):
            raise OptionError(
                f"DDIMScheduler: steps must be an integer in 1..{schedule.T} (the schedule's T), "
                f"got {steps!r}"
            )
        eta_f = float(eta)
        if not math.isfinite(eta_f) or eta_f < 0.0:
            raise OptionError(f"DDIMScheduler: eta must be a finite number >= 0, got {eta!r}")
        if prediction not in PREDICTIONS:
            raise unknown_name(
                "prediction", str(prediction), list(PREDICTIONS), "DDIMScheduler(prediction=...)"
            )
        if clip_sample is not None and not (math.isfinite(clip_sample) and clip_sample > 0):
            raise OptionError(
                f"DDIMScheduler: clip_sample must be a positive number or None, got {clip_sample!r}"
            )
        self.clip_sample = None if clip_sample is None else float(clip_sample)
        self.schedule = schedule
        self.steps = int(steps)
        self.eta = eta_f
        self.prediction = prediction
        self.start = first_timestep(schedule, start_alpha_bar)
        if self.steps > self.start + 1:
            raise OptionError(
                f"DDIMScheduler: {self.steps} steps do not fit below the first step "
                f"{self.start} (start_alpha_bar={start_alpha_bar}); use at most {self.start + 1}"
            )
        # trailing spacing over the steps 0 .. start (all T of them by default)
        self.timesteps: tuple[int, ...] = trailing_timesteps(self.start + 1, self.steps)
        self._prev = dict(zip(self.timesteps, self.timesteps[1:] + (-1,), strict=True))

    # --- coefficients (python floats, float64) ---------------------------------------

    def alpha_bar(self, t: int) -> float:
        """``alpha_bar_t``; ``t = -1`` (after the last step) is 1."""
        return 1.0 if t < 0 else self.schedule.alphas_cumprod[t]

    def prev_timestep(self, t: int) -> int:
        """The retained step after ``t`` in sampling order (-1 after the last one)."""
        try:
            return self._prev[int(t)]
        except (KeyError, TypeError, ValueError):
            raise OptionError(
                f"DDIMScheduler.step: t={t!r} is not one of the scheduler's timesteps "
                f"({self.timesteps[0]} .. {self.timesteps[-1]}, {self.steps} steps); "
                "iterate over scheduler.timesteps"
            ) from None

    def sigma(self, t: int) -> float:
        """Eq. 16: ``eta sqrt((1 - a_p) / (1 - a_t)) sqrt(1 - a_t / a_p)`` for the step from t."""
        a_t = self.alpha_bar(t)
        a_p = self.alpha_bar(self.prev_timestep(t))
        if self.eta == 0.0:
            return 0.0
        return self.eta * math.sqrt((1.0 - a_p) / (1.0 - a_t)) * math.sqrt(1.0 - a_t / a_p)

    # --- the update -----------------------------------------------------------------

    def split(
        self, model_output: torch.Tensor, t: int, x_t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0_hat, eps_hat)`` from the network output at step t, whichever it predicts.

        With ``clip_sample = c``, ``x0_hat`` is clamped to ``[-c, c]`` and ``eps_hat``
        recomputed from the clamped value, so the step stays the DDIM map of a
        consistent pair (Ho et al. 2020 clip their x0 predictions to the data range).
        Why: at the first trailing step ``sqrt(a_t)`` is ~1.6e-3 (cosine, T = 1000), so
        an epsilon network's error reaches ``x0_hat`` multiplied by ~640.
        """
        a_t = self.alpha_bar(t)
        if self.prediction == "epsilon":
            eps = model_output
            x0 = (x_t - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
        else:
            x0 = model_output
            eps = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1.0 - a_t)
        if self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
            eps = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1.0 - a_t)
        return x0, eps

    def step(
        self,
        model_output: torch.Tensor,
        t: int,
        x_t: torch.Tensor,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Eq. 12: ``x_p`` from ``x_t`` and the network output at ``t``.

        ``noise`` (standard normal, shaped like ``x_t``) is required when ``sigma_t > 0``
        and ignored otherwise.
        """
        if model_output.shape != x_t.shape:
            raise OptionError(
                f"DDIMScheduler.step: model_output shape {tuple(model_output.shape)} differs "
                f"from x_t shape {tuple(x_t.shape)}; the denoiser must return one value "
                "per input value"
            )
        t_prev = self.prev_timestep(t)
        a_p = self.alpha_bar(t_prev)
        sigma = self.sigma(t)
        x0, eps = self.split(model_output, t, x_t)
        # max(): 1 - a_p - sigma^2 is >= 0 in exact arithmetic (eta <= 1); rounding or
        # eta > 1 may push it below, where the direction term is dropped.
        direction = math.sqrt(max(1.0 - a_p - sigma * sigma, 0.0))
        x_prev = math.sqrt(a_p) * x0 + direction * eps
        if sigma > 0.0:
            if noise is None:
                raise OptionError(
                    f"DDIMScheduler.step: eta={self.eta} > 0 needs noise= (standard normal, "
                    "shaped like x_t), e.g. from models.iterative.noise.positional_noise"
                )
            if noise.shape != x_t.shape:
                raise OptionError(
                    f"DDIMScheduler.step: noise shape {tuple(noise.shape)} differs from x_t "
                    f"shape {tuple(x_t.shape)}"
                )
            x_prev = x_prev + sigma * noise
        return x_prev

    def add_noise(
        self, x0: torch.Tensor, noise: torch.Tensor, t: int | torch.Tensor
    ) -> torch.Tensor:
        """``q(x_t | x_0)``: ``sqrt(a_t) x0 + sqrt(1 - a_t) noise`` (Ho et al. 2020, eq. 4).

        ``t`` is one index, or an int64 tensor of shape (N,) giving one per sample of a
        batch (the training case); it broadcasts over the remaining dimensions.
        """
        if noise.shape != x0.shape:
            raise OptionError(
                f"DDIMScheduler.add_noise: noise shape {tuple(noise.shape)} differs from x0 "
                f"shape {tuple(x0.shape)}"
            )
        T = self.schedule.T
        if isinstance(t, torch.Tensor):
            if t.dtype.is_floating_point or t.dim() != 1 or t.shape[0] != x0.shape[0]:
                raise OptionError(
                    f"DDIMScheduler.add_noise: a tensor t must be integer with shape "
                    f"({x0.shape[0]},), one index per sample, got {t.dtype} {tuple(t.shape)}"
                )
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= T):
                raise OptionError(f"DDIMScheduler.add_noise: t must lie in 0..{T - 1}")
            table = torch.tensor(self.schedule.alphas_cumprod, dtype=torch.float64)
            a = table[t.cpu().long()].to(device=x0.device, dtype=x0.dtype)
            a = a.reshape((-1,) + (1,) * (x0.dim() - 1))
            return a.sqrt() * x0 + (1.0 - a).sqrt() * noise
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < T:
            raise OptionError(f"DDIMScheduler.add_noise: t must be an integer in 0..{T - 1}")
        a_t = self.alpha_bar(int(t))
        return math.sqrt(a_t) * x0 + math.sqrt(1.0 - a_t) * noise

    def sample(
        self,
        denoise: Callable[[torch.Tensor, int, Any], torch.Tensor],
        x_T: torch.Tensor,
        cond: Any = None,
        noise_fn: Callable[[int], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Run every step from ``x_T`` (at ``timesteps[0]``) to the final ``x0_hat``.

        ``denoise(x_t, t, cond)`` returns the network output at step ``t``;
        ``noise_fn(t)`` returns the noise for the step from ``t`` and is called only when
        ``sigma_t > 0`` (so it may be None for ``eta = 0``). Convention for positional
        noise: draw ``x_T`` with ``step = schedule.T`` and step t's noise with ``step = t``,
        so no two draws share a key. Gradients follow the caller: inference runs it
        under ``torch.inference_mode``; test-time adaptation trains through every step
        (:meth:`models.iterative.windowed.WindowedDiffusion.forward`).
        """
        x = x_T
        for t in self.timesteps:
            out = denoise(x, t, cond)
            noise = None
            if self.sigma(t) > 0.0:
                if noise_fn is None:
                    raise OptionError(
                        f"DDIMScheduler.sample: eta={self.eta} > 0 needs noise_fn "
                        "(t -> standard normal tensor shaped like x_T)"
                    )
                noise = noise_fn(t)
            x = self.step(out, t, x, noise)
        return x
