"""Hypercomplex (Cayley-Dickson) numbers for Q2n: complex, quaternion, octonion, ...

Q2n (Garzelli & Nencini, IEEE GRSL 2009; quality.md "Q2n") treats the B bands of a pixel
as one hypercomplex number with B = 2^k components and needs the product
g * conj(f). The product is the recursive Cayley-Dickson doubling the reference
toolbox uses (``onion_mult``): for x = (a, b) and y = (c, d), halves of length n/2,
with b~ = conj(b), d~ = conj(d),

    x y = ( a c - d~ conj(b~),  conj(a) d~ + c b~ ),

and for one component the real product. This is the toolbox's recursion. It equals the
textbook Cayley-Dickson product (a, b)(c, d) = (ac - d* b, da + b c*) up to a fixed sign
on some output components (for 4 components, the last one), so |s_gf| and hence Q2n do
not depend on which of the two is used; the toolbox's is kept so that the components of
s_gf match too.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def conj(x: np.ndarray) -> np.ndarray:
    """Hypercomplex conjugate along the last axis: keep the real part, negate the rest."""
    out = -np.asarray(x, dtype=np.float64)
    out[..., 0] = -out[..., 0]
    return out


def cd_product(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cayley-Dickson product of hypercomplex arrays (components on the last axis).

    The number of components must be a power of two (1, 2, 4, 8, 16 ...).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.shape[-1]
    if n != y.shape[-1] or n & (n - 1):
        raise ValueError(f"hypercomplex operands need the same power-of-two length, got {n}")
    if n == 1:
        return x * y
    h = n // 2
    a, b = x[..., :h], conj(x[..., h:])
    c, d = y[..., :h], conj(y[..., h:])
    first = cd_product(a, c) - cd_product(d, conj(b))
    second = cd_product(conj(a), d) + cd_product(c, b)
    return np.concatenate([first, second], axis=-1)


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (Q2n pads the bands with zero bands up to it)."""
    p = 1
    while p < n:
        p *= 2
    return p


@lru_cache(maxsize=16)
def conj_product_tensor(n: int) -> np.ndarray:
    """T[i, j] = e_i * conj(e_j) for the n basis units, shape (n, n, n).

    The product is bilinear, so for hypercomplex g and f with components g_i, f_j,
    g * conj(f) = sum_ij g_i f_j T[i, j]; Q2n's covariance s_gf is the same sum with
    the component covariances cov(g_i, f_j) in place of g_i f_j.
    """
    eye = np.eye(n)
    t = cd_product(eye[:, None, :], conj(eye)[None, :, :])
    t.setflags(write=False)
    return t
