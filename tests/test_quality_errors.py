"""Bad inputs raise QualityError with a message that says what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from errors import PansharpError, QualityError
from quality import (
    FullAccumulator,
    ReducedAccumulator,
    d_lambda,
    d_lambda_k,
    d_s,
    ergas,
    full_resolution_indexes,
    hqnr,
    psnr,
    q2n,
    q_avg,
    qnr,
    reduced_resolution_indexes,
    sam,
    scc,
    ssim,
    uiqi,
)

RNG = np.random.default_rng(0)
A = RNG.uniform(100, 1000, (4, 80, 80))
B = A + RNG.normal(0, 10, A.shape)


def test_quality_error_is_a_pansharp_value_error() -> None:
    assert issubclass(QualityError, PansharpError) and issubclass(QualityError, ValueError)


@pytest.mark.parametrize(
    "fn", [sam, scc, q2n, q_avg, lambda f, g: ergas(f, g, 4), lambda f, g: psnr(f, g, 11)]
)
def test_band_count_and_size_mismatch(fn) -> None:
    with pytest.raises(QualityError, match="4 bands but .* 3"):
        fn(A, B[:3])
    with pytest.raises(QualityError, match="same grid"):
        fn(A, B[:, :-1])
    with pytest.raises(QualityError, match="bands, rows, cols"):
        fn(A[0, 0], B[0, 0])


def test_scenes_smaller_than_one_block() -> None:
    with pytest.raises(QualityError, match="at least 32x32"):
        q2n(A[:, :31], B[:, :31])
    with pytest.raises(QualityError, match="at least 32x32"):
        q_avg(A[:, :, :20], B[:, :, :20])
    with pytest.raises(QualityError, match="at least 73x73.*border cut"):
        reduced_resolution_indexes(A[:, :72], B[:, :72], 4, 11)
    with pytest.raises(QualityError, match="at least 73x73"):
        ReducedAccumulator((4, 72, 200), 4, 11)
    with pytest.raises(QualityError, match="at least 32x32"):
        d_lambda(A[:, :16, :16], B[:, :16, :16])
    with pytest.raises(QualityError, match="11x11"):
        ssim(A[:, :10], B[:, :10], 11)


def test_undefined_indexes_on_empty_data() -> None:
    zero = np.zeros_like(A)
    with pytest.raises(QualityError, match="SAM is undefined"):
        sam(zero, A)
    bad = A.copy()
    bad[2] = 0.0
    with pytest.raises(QualityError, match=r"ERGAS is undefined.*\[2\]"):
        ergas(B, bad, 4)
    with pytest.raises(QualityError, match="SCC is undefined: every Sobel gradient of the fused"):
        scc(np.zeros_like(A), A)
    with pytest.raises(QualityError, match="NaN"):
        sam(np.where(A > 990, np.nan, A), B)
    with pytest.raises(QualityError, match="non-empty blocks"):
        uiqi(np.ones(4), np.ones(5))


def test_ratio_not_a_power_of_two_where_the_23_tap_interpolator_is_needed() -> None:
    pan = A.mean(axis=0)[:78, :78]
    f, e = A[:, :78, :78], B[:, :78, :78]
    for fn in (
        lambda: d_s(f, pan, e, 3),
        lambda: qnr(f, pan, e, 3),
        lambda: hqnr(f, pan, e, 3, [0.3] * 4),
        lambda: full_resolution_indexes(f, pan, B[:, :26, :26], e, 3, [0.3] * 4),
        lambda: FullAccumulator(f.shape, 6, [0.3] * 4),
    ):
        with pytest.raises(QualityError, match="power-of-two.*D_S, QNR and HQNR"):
            fn()
    # the indexes that do not interpolate accept any integer ratio
    assert 0 <= d_lambda_k(f, e, 3, [0.3] * 4) < 1
    assert ergas(B, A, 3) > 0
    with pytest.raises(QualityError, match="positive integer"):
        ergas(B, A, 0)


def test_full_resolution_argument_checks() -> None:
    ratio = 4
    pan = A.mean(axis=0)
    ms = A[:, ::4, ::4]
    with pytest.raises(QualityError, match="at least 2 bands"):
        d_lambda(A[:1], B[:1])
    with pytest.raises(QualityError, match="pan is 80x79"):
        d_s(A, pan[:, :-1], B, ratio)
    with pytest.raises(QualityError, match="multiples of the ratio"):
        d_s(A[:, :78, :78], pan[:78, :78], B[:, :78, :78], ratio)
    with pytest.raises(QualityError, match="needs an MS of shape"):
        full_resolution_indexes(A, pan, ms[:, :-1], B, ratio, [0.3] * 4)
    with pytest.raises(QualityError, match="3 MTF gains for a 4-band"):
        d_lambda_k(A, B, ratio, [0.3] * 3)
    with pytest.raises(QualityError, match=r"\(0, 1\)"):
        hqnr(A, pan, B, ratio, [0.3, 0.3, 1.5, 0.3])
    with pytest.raises(QualityError, match="bit depth"):
        psnr(A, B, 0)
    with pytest.raises(QualityError, match="bit depth"):
        reduced_resolution_indexes(A, B, 4, 11.5)
