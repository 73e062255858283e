"""The DDIM step rule (models.iterative.ddim) against oracle denoisers and Ho et al.'s posterior."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from errors import OptionError, UnknownNameError
from models.iterative import DDIMScheduler, make_schedule, positional_noise, trailing_timesteps


def _data(seed: int = 0, shape: tuple[int, ...] = (2, 3, 8, 8)) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    return x0, eps


def _oracle(sched: DDIMScheduler, x0: torch.Tensor):
    """The denoiser that knows x0: returns the exact epsilon (or x0) for any x_t."""

    def denoise(x_t: torch.Tensor, t: int, cond: object) -> torch.Tensor:
        if sched.prediction == "x0":
            return x0
        a = sched.alpha_bar(t)
        return (x_t - math.sqrt(a) * x0) / math.sqrt(1 - a)

    return denoise


def test_timesteps_even_descending() -> None:
    assert trailing_timesteps(1000, 4) == (999, 749, 499, 249)
    assert trailing_timesteps(10, 10) == tuple(range(9, -1, -1))
    assert trailing_timesteps(10, 1) == (9,)
    sched = DDIMScheduler(make_schedule("linear", 50), 7)
    ts = np.array(sched.timesteps)
    assert ts[0] == 49 and np.all(np.diff(ts) < 0) and len(set(ts)) == 7
    gaps = -np.diff(ts)
    assert gaps.max() - gaps.min() <= 1  # evenly spaced up to integer rounding


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [100, 4])
def test_oracle_epsilon_recovers_x0(kind: str, steps: int) -> None:
    T = 100
    sched = DDIMScheduler(make_schedule(kind, T), steps)
    x0, eps = _data()
    x_T = sched.add_noise(x0, eps, T - 1)
    out = sched.sample(_oracle(sched, x0), x_T)
    # float64; the first step divides by sqrt(alpha_bar_T) (~4e-5 for cosine): error <~1e-11.
    assert torch.allclose(out, x0, rtol=0, atol=1e-9)
    # Along the way every x_t stays on q(x_t | x0) with the same eps (eta = 0).
    x = x_T
    for t in sched.timesteps[:-1]:
        x = sched.step(_oracle(sched, x0)(x, t, None), t, x)
        tp = sched.prev_timestep(t)
        assert torch.allclose(x, sched.add_noise(x0, eps, tp), rtol=0, atol=1e-9)


def test_x0_prediction_equals_epsilon_prediction() -> None:
    sched_e = DDIMScheduler(make_schedule("cosine", 50), 10)
    sched_x = DDIMScheduler(make_schedule("cosine", 50), 10, prediction="x0")
    x0, eps = _data(1)
    x = sched_e.add_noise(x0, eps, 30)
    t = sched_e.timesteps[3]
    x_t = sched_e.add_noise(x0, eps, t)
    a = sched_e.step(_oracle(sched_e, x0)(x_t, t, None), t, x_t)
    b = sched_x.step(_oracle(sched_x, x0)(x_t, t, None), t, x_t)
    assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert not torch.allclose(a, x)  # the step moved
    out = sched_x.sample(_oracle(sched_x, x0), sched_x.add_noise(x0, eps, 49))
    assert torch.allclose(out, x0, rtol=0, atol=1e-12)


def test_eta_one_full_steps_is_ddpm_posterior() -> None:
    """eta=1, steps=T: sigma^2 and the mean are Ho et al.'s q(x_{t-1} | x_t, x0) (eq. 6-7)."""
    T = 20
    s = make_schedule("linear", T)
    sched = DDIMScheduler(s, T, eta=1.0, prediction="x0")
    x0, eps = _data(2)
    a, b = s.array, s.betas
    for t in (T - 1, 10, 1):
        var = (1 - a[t - 1]) / (1 - a[t]) * b[t]
        assert sched.sigma(t) == pytest.approx(math.sqrt(var), rel=1e-12)
        x_t = sched.add_noise(x0, eps, t)
        mean = (
            math.sqrt(a[t - 1]) * b[t] / (1 - a[t]) * x0
            + math.sqrt(1 - b[t]) * (1 - a[t - 1]) / (1 - a[t]) * x_t
        )
        z = torch.ones_like(x0)
        got = sched.step(x0, t, x_t, noise=z)
        assert torch.allclose(got, mean + math.sqrt(var) * z, rtol=0, atol=1e-12)
    assert sched.sigma(0) == 0.0  # no noise on the last step


def test_add_noise_per_sample_timesteps() -> None:
    sched = DDIMScheduler(make_schedule("cosine", 100), 10)
    x0, eps = _data(3)
    t = torch.tensor([5, 80])
    got = sched.add_noise(x0, eps, t)
    for i in range(2):
        want = sched.add_noise(x0[i : i + 1], eps[i : i + 1], int(t[i]))
        assert torch.allclose(got[i : i + 1], want, rtol=0, atol=1e-15)


class _Toy(nn.Module):
    def __init__(self, bands: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(bands + 1, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, bands, 3, padding=1),
        )

    def forward(self, x: torch.Tensor, t: int, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, cond], dim=1)) + t / 1000.0


def _run_toy(seed: int, eta: float) -> torch.Tensor:
    torch.manual_seed(seed)
    net = _Toy(3).eval()
    sched = DDIMScheduler(make_schedule("cosine", 1000), 4, eta=eta)
    rows, cols = np.arange(100, 116), np.arange(40, 56)
    cond = positional_noise(seed + 1, rows, cols, 0, 1)[None]
    x_T = positional_noise(seed, rows, cols, 1000, 3)[None]

    def noise_fn(t: int) -> torch.Tensor:
        return positional_noise(seed, rows, cols, t, 3)[None]

    return sched.sample(net, x_T, cond, noise_fn)


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_toy_denoiser_deterministic(eta: float) -> None:
    a, b = _run_toy(7, eta), _run_toy(7, eta)
    assert a.shape == (1, 3, 16, 16) and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.allclose(a, _run_toy(8, eta))


def test_eta_changes_result() -> None:
    assert not torch.allclose(_run_toy(7, 0.0), _run_toy(7, 0.5))


def test_bad_scheduler_arguments() -> None:
    s = make_schedule("linear", 10)
    with pytest.raises(OptionError, match="steps must be an integer in 1..10"):
        DDIMScheduler(s, 11)
    with pytest.raises(OptionError, match="eta"):
        DDIMScheduler(s, 5, eta=-0.1)
    with pytest.raises(UnknownNameError, match="prediction"):
        DDIMScheduler(s, 5, prediction="v")
    with pytest.raises(OptionError, match="NoiseSchedule"):
        DDIMScheduler(s.array, 5)  # type: ignore[arg-type]
    sched = DDIMScheduler(s, 5, eta=1.0)
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(OptionError, match="not one of the scheduler's timesteps"):
        sched.step(x, 8, x)
    with pytest.raises(OptionError, match="needs noise="):
        sched.step(x, 9, x)
    with pytest.raises(OptionError, match="needs noise_fn"):
        sched.sample(lambda x_t, t, c: x_t, x)
    with pytest.raises(OptionError, match="t must be an integer in 0..9"):
        sched.add_noise(x, x, 10)
    with pytest.raises(OptionError, match="model_output shape"):
        sched.step(torch.zeros(1, 1, 2, 3), 9, x)
