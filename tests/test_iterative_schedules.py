"""Noise schedules (models.iterative.schedules) and the torch-free import of ``models``."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from errors import OptionError, UnknownNameError
from models.iterative.schedules import COSINE_S, NoiseSchedule, make_schedule


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("T", [1, 10, 1000])
def test_alphas_cumprod_decreasing_in_unit_interval(kind: str, T: int) -> None:
    s = make_schedule(kind, T)
    a = s.array
    assert s.T == T and s.kind == kind and a.shape == (T,)
    assert np.all(a > 0.0) and np.all(a <= 1.0)
    assert np.all(np.diff(a) < 0.0)
    assert np.all(s.betas > 0.0) and np.all(s.betas < 1.0)


def test_linear_matches_ho_endpoints() -> None:
    s = make_schedule("linear", 1000)
    b = s.betas
    # betas recovered from the cumulative product: relative rounding ~1e-16 / beta.
    assert b[0] == pytest.approx(1e-4, rel=1e-9)
    assert b[-1] == pytest.approx(0.02, rel=1e-9)
    assert s.alphas_cumprod[-1] == pytest.approx(np.prod(1.0 - np.linspace(1e-4, 0.02, 1000)))
    # Ho et al.: alpha_bar_T ~ 4e-5 for T = 1000 (signal almost gone).
    assert 1e-5 < s.alphas_cumprod[-1] < 1e-4


def test_cosine_known_values() -> None:
    T = 1000
    s = make_schedule("cosine", T)

    def f(t: float) -> float:
        return math.cos((t / T + COSINE_S) / (1 + COSINE_S) * math.pi / 2) ** 2

    # Unclipped steps follow eq. 17 exactly: index t is step t + 1.
    for t in (0, 1, T // 2, 900):
        assert s.alphas_cumprod[t] == pytest.approx(f(t + 1) / f(0), rel=1e-12)
    # First step adds almost no noise; midpoint ~ cos^2((0.5 + s)/(1 + s) pi/2) / f(0) ~ 0.49.
    assert 1 - s.alphas_cumprod[0] < 1e-4
    assert s.alphas_cumprod[T // 2 - 1] == pytest.approx(0.4937, abs=1e-3)
    # f(T) = 0: the last beta is clipped to 0.999, so alpha_bar stays positive and tiny.
    assert s.betas[-1] == pytest.approx(0.999, rel=1e-9)
    assert 0.0 < s.alphas_cumprod[-1] < 1e-6


def test_schedule_is_frozen_and_hashable() -> None:
    s = make_schedule("cosine", 10)
    with pytest.raises(AttributeError):
        s.T = 11  # type: ignore[misc]
    assert hash(s) == hash(make_schedule("cosine", 10))
    with pytest.raises(ValueError):
        s.array[0] = 0.5


@pytest.mark.parametrize(
    ("kind", "T", "err"),
    [("quadratic", 10, UnknownNameError), ("linear", 0, OptionError), ("cosine", 2.5, OptionError)],
)
def test_bad_schedule_arguments(kind: str, T: object, err: type) -> None:
    with pytest.raises(err) as info:
        make_schedule(kind, T)  # type: ignore[arg-type]
    assert "make_schedule" in str(info.value)


def test_schedule_length_mismatch_refused() -> None:
    with pytest.raises(OptionError, match="make_schedule"):
        NoiseSchedule(T=3, kind="linear", alphas_cumprod=(0.9, 0.8))


def test_importing_models_does_not_import_iterative_or_torch() -> None:
    code = (
        "import sys; import models, models.registry; "
        "print('models.iterative' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
