"""Tolerances for comparing two float computations of the same values, from their magnitude.

Two computations that differ only in how their roundings fall (another patch size or
batch, so another blocking of the convolutions; an equivalent formula; inputs rounded
once more) do not differ by a fixed amount: the difference scales with the magnitude of
what was summed. The bound used here is the classical one for a sum of ``n`` terms
evaluated in any order: its error is at most ``gamma_(n-1) * sum|x_i|`` with
``gamma_m = m u / (1 - m u)`` and ``u = eps / 2`` (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., 2002, eq. 4.4), so two evaluation orders differ by at
most about ``(n - 1) * eps * sum|x_i|``.

For a network, ``n`` is the accumulation length: every layer's fan-in (input channels x
kernel area) added up along the layers, since each layer's rounding is carried through
the next ones; ``sum|x_i|`` is taken as the largest magnitude of the reference output.
The element-wise ``rtol`` of ``numpy.testing.assert_allclose`` is the wrong shape for
this: a value near zero can sit at the end of sums of large terms, and its error is set
by those terms, not by its own size (the defect of a fixed ``atol=1e-3`` next to an
``rtol`` on outputs in the thousands: a few such values fail on some processors).
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2^-23
EPS64 = float(np.finfo(np.float64).eps)  # 2^-52


def accumulation_length(model: Any) -> int:
    """Sum of the fan-ins of every weight of ``model`` (a torch module): for a weight of
    shape (out, in, kh, kw) or (out, in), the ``in * kh * kw`` products summed into one
    output value. Parallel branches are counted too, which only makes it an upper bound."""
    return int(sum(p[0].numel() for p in model.parameters() if p.ndim >= 2))


def _numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def atol_for(ref: Any, terms: int, eps: float = EPS32) -> float:
    """Absolute tolerance ``terms * eps * max|ref|`` (see the module docstring)."""
    return float(terms) * eps * float(np.nanmax(np.abs(_numpy(ref))))


def assert_rounding_close(got: Any, ref: Any, terms: int, eps: float = EPS32) -> None:
    """``|got - ref| <= terms * eps * max|ref|`` everywhere (numpy arrays or tensors), NaN
    at the same places; the message gives the worst difference and the tolerance."""
    g, r = _numpy(got).astype(np.float64), _numpy(ref).astype(np.float64)
    assert g.shape == r.shape, f"shapes differ: {g.shape} vs {r.shape}"
    assert np.array_equal(np.isnan(g), np.isnan(r)), "NaN at different places"
    atol = atol_for(r, terms, eps)
    worst = float(np.nanmax(np.abs(g - r))) if g.size else 0.0
    assert worst <= atol, (
        f"max |got - ref| = {worst:.3g} > {terms} x eps x max|ref| = {atol:.3g} "
        f"(max|ref| {float(np.nanmax(np.abs(r))):.4g})"
    )
