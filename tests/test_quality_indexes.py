"""Whole-image quality indexes against their definitions (quality.md).

Ideal values on identical inputs, closed-form cases, and independent small reference
computations written inline (explicit quaternion algebra, brute-force windows, scipy
filters) that share no code with ``quality``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from physics.mtf import mtf_filter_bands
from quality import (
    IDEAL,
    d_lambda,
    d_lambda_k,
    d_s,
    ergas,
    full_resolution_indexes,
    hqnr,
    pan_lowpass,
    psnr,
    q2n,
    q_avg,
    qnr,
    reduced_resolution_indexes,
    round_uint16,
    sam,
    scc,
    ssim,
    uiqi,
)


def scene(seed: int, bands: int, rows: int, cols: int, lo: float = 200.0) -> np.ndarray:
    """Image-like (bands, rows, cols) raw DN: shared smooth structure + per-band texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    base = np.zeros((rows, cols))
    for _ in range(8):
        fy, fx = rng.uniform(-0.15, 0.15, 2)
        base += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 6))
    out = []
    for _ in range(bands):
        tex = ndimage.gaussian_filter(rng.normal(size=(rows, cols)), 1.2)
        out.append(lo + 300.0 * (base + 2.0 + rng.uniform(0.5, 1.5) * tex) * rng.uniform(0.6, 1.4))
    return np.stack(out)


def noisy(gt: np.ndarray, seed: int, sigma: float = 25.0) -> np.ndarray:
    return gt + np.random.default_rng(seed).normal(0, sigma, gt.shape)


# --------------------------------------------------------------------------- ideal values


def test_ideal_reduced_resolution_identical_inputs() -> None:
    gt = scene(1, 4, 110, 97)
    res = reduced_resolution_indexes(gt, gt.copy(), ratio=4, bit_depth=11)
    assert set(res) == {"q2n", "q", "sam", "ergas", "scc", "psnr", "ssim"}
    for key, value in res.items():
        if math.isinf(IDEAL[key]):
            assert value == IDEAL[key]
        else:
            assert value == pytest.approx(IDEAL[key], abs=1e-12), key
    # the whole-image functions too
    assert q2n(gt, gt) == pytest.approx(1.0, abs=1e-12)
    assert q_avg(gt, gt) == pytest.approx(1.0, abs=1e-12)
    assert sam(gt, gt) == pytest.approx(0.0, abs=1e-6)  # arccos near 1: ~1e-8 rad noise
    assert ergas(gt, gt, 4) == 0.0
    assert scc(gt, gt) == pytest.approx(1.0, abs=1e-12)
    assert psnr(gt, gt, 11) == math.inf
    assert ssim(gt, gt, 11) == pytest.approx(1.0, abs=1e-12)


def test_ideal_full_resolution_consistent_inputs() -> None:
    """F_b = PAN and EXP_b = PAN_lp: the fused image is what PAN and MS predict."""
    ratio, b = 4, 3
    pan = scene(2, 1, 96, 128)[0]
    fused = np.stack([pan] * b)
    exp = np.stack([pan_lowpass(pan, ratio)] * b)
    ms = np.zeros((b, 96 // ratio, 128 // ratio)) + 1.0
    res = full_resolution_indexes(fused, pan, ms, exp, ratio, [0.3] * b)
    assert res["d_lambda"] == pytest.approx(0.0, abs=1e-12)
    assert res["d_s"] == pytest.approx(0.0, abs=1e-12)
    assert res["qnr"] == pytest.approx(1.0, abs=1e-12)
    assert d_lambda(fused, exp) == pytest.approx(0.0, abs=1e-12)
    assert d_s(fused, pan, exp, ratio) == pytest.approx(0.0, abs=1e-12)
    assert qnr(fused, pan, exp, ratio) == pytest.approx(1.0, abs=1e-12)


def test_ideal_khan_indexes_when_exp_is_the_filtered_fusion() -> None:
    """EXP = MTF(F) gives D_lambda_K = 0; a zero PAN makes both D_S terms 0, so HQNR = 1."""
    ratio, b = 4, 4
    gains = [0.3] * b
    x = scene(3, 1, 64, 96)[0]
    fused = np.stack([x] * b)
    exp = mtf_filter_bands(fused, gains, ratio)
    pan = np.zeros((64, 96))
    assert d_lambda_k(fused, exp, ratio, gains) == pytest.approx(0.0, abs=1e-12)
    assert d_s(fused, pan, exp, ratio) == 0.0
    assert hqnr(fused, pan, exp, ratio, gains) == pytest.approx(1.0, abs=1e-12)
    res = full_resolution_indexes(fused, pan, exp[:, ::4, ::4], exp, ratio, gains)
    for key in ("d_lambda", "d_s", "qnr", "d_lambda_k", "hqnr"):
        assert res[key] == pytest.approx(IDEAL[key], abs=1e-12), key


# --------------------------------------------------------------------------- closed forms


def test_sam_of_a_known_per_pixel_rotation() -> None:
    """f = cos(t) g + sin(t) |g| u with u a unit vector orthogonal to g: angle t exactly."""
    rng = np.random.default_rng(4)
    g = rng.uniform(50, 1000, (5, 40, 30))
    v = rng.normal(size=g.shape)
    gn = g / np.linalg.norm(g, axis=0)
    u = v - np.sum(v * gn, axis=0) * gn
    u /= np.linalg.norm(u, axis=0)
    theta = rng.uniform(0.01, 0.6, (40, 30))
    f = np.cos(theta) * g + np.sin(theta) * np.linalg.norm(g, axis=0) * u
    assert sam(f, g) == pytest.approx(np.degrees(theta.mean()), rel=1e-10)
    # zero-spectrum pixels are dropped, not counted as 0 degrees
    f2, g2 = f.copy(), g.copy()
    g2[:, :10] = 0.0
    assert sam(f2, g2) == pytest.approx(np.degrees(theta[10:].mean()), rel=1e-10)


def test_ergas_of_a_global_gain() -> None:
    """Band b = mu_b + s_b * (+-1 checkerboard): E[x^2] = mu_b^2 + s_b^2 exactly, so a
    gain g gives ERGAS = (100/ratio) |g-1| sqrt(mean_b (mu_b^2 + s_b^2) / mu_b^2)."""
    mu = np.array([300.0, 512.0, 800.0, 1200.0])
    s = np.array([40.0, 64.0, 100.0, 10.0])
    checker = np.where((np.add.outer(np.arange(48), np.arange(64)) % 2) == 0, 1.0, -1.0)
    gt = mu[:, None, None] + s[:, None, None] * checker
    for gain, ratio in ((1.1, 4), (0.75, 2)):
        expected = (100 / ratio) * abs(gain - 1) * math.sqrt(np.mean((mu**2 + s**2) / mu**2))
        assert ergas(gain * gt, gt, ratio) == pytest.approx(expected, rel=1e-12)


def test_psnr_of_a_constant_offset() -> None:
    gt = scene(5, 3, 40, 50)
    assert psnr(gt + 3.0, gt, 11) == pytest.approx(10 * math.log10(2047.0**2 / 9.0), rel=1e-12)
    assert psnr(gt - 0.5, gt, 8) == pytest.approx(10 * math.log10(255.0**2 / 0.25), rel=1e-12)


# --------------------------------------------------------------------------- Q2n


def _hamilton(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hamilton product of quaternions stored on the last axis (w, x, y, z)."""
    a1, b1, c1, d1 = np.moveaxis(p, -1, 0)
    a2, b2, c2, d2 = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2,
            a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
            a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2,
            a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2,
        ],
        axis=-1,
    )


def _q4_block(g: np.ndarray, f: np.ndarray) -> float:
    """Q4 of one (4, 32, 32) block by explicit quaternion algebra (Garzelli 2009)."""
    g, f = round_uint16(g), round_uint16(f)  # MATLAB uint16
    gq = g.reshape(4, -1).T.copy()
    fq = f.reshape(4, -1).T.copy()
    n = gq.shape[0]
    for b in range(4):
        mean, std = gq[:, b].mean(), gq[:, b].std(ddof=1)
        std = std if std > 0 else np.finfo(float).eps
        gq[:, b] = (gq[:, b] - mean) / std + 1
        fq[:, b] = fq[:, b] + 1 if mean == 0 else (fq[:, b] - mean) / std + 1
    conj = np.array([1.0, -1.0, -1.0, -1.0])
    mg, mf = gq.mean(axis=0), fq.mean(axis=0)
    s_gf = n / (n - 1) * (_hamilton(gq, fq * conj).mean(axis=0) - _hamilton(mg, mf * conj))
    var_g = n / (n - 1) * np.mean(np.sum((gq - mg) ** 2, axis=1))
    var_f = n / (n - 1) * np.mean(np.sum((fq - mf) ** 2, axis=1))
    ng, nf = np.linalg.norm(mg), np.linalg.norm(mf)
    return float(4 * np.linalg.norm(s_gf) * ng * nf / ((var_g + var_f) * (ng**2 + nf**2)))


def test_q4_single_block_matches_explicit_quaternion_algebra() -> None:
    gt = scene(6, 4, 32, 32)
    fused = np.roll(gt, 1, axis=2) + np.random.default_rng(0).normal(0, 5, gt.shape)
    value = q2n(fused, gt)
    assert value < 0.999
    assert value == pytest.approx(_q4_block(gt, fused), rel=1e-10)


def test_shift_lowers_q2n_and_matches_per_block_quaternion_reference() -> None:
    gt = scene(7, 4, 96, 64)
    shifted = np.roll(gt, 2, axis=1)
    value = q2n(shifted, gt)
    ref = np.mean(
        [
            _q4_block(gt[:, i : i + 32, j : j + 32], shifted[:, i : i + 32, j : j + 32])
            for i in range(0, 96, 32)
            for j in range(0, 64, 32)
        ]
    )
    assert value == pytest.approx(ref, rel=1e-10)
    assert value < q2n(np.roll(gt, 1, axis=1), gt) < q2n(gt, gt) == pytest.approx(1.0)


def test_q2n_three_bands_is_q4_with_a_zero_fourth_band() -> None:
    gt = scene(8, 3, 64, 64)
    fused = noisy(gt, 1, 40.0)
    pad = np.zeros((1, 64, 64))
    v3 = q2n(fused, gt)
    v4 = q2n(np.concatenate([fused, pad]), np.concatenate([gt, pad]))
    assert v3 == v4
    ref = np.mean(
        [
            _q4_block(
                np.concatenate([gt, pad])[:, i : i + 32, j : j + 32],
                np.concatenate([fused, pad])[:, i : i + 32, j : j + 32],
            )
            for i in (0, 32)
            for j in (0, 32)
        ]
    )
    assert v3 == pytest.approx(ref, rel=1e-10)


def _onion_mult(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The toolbox's recursive (Cayley-Dickson) product, per pixel, written out."""
    n = x.shape[-1]
    if n == 1:
        return x * y

    def cj(v: np.ndarray) -> np.ndarray:
        return np.concatenate([v[..., :1], -v[..., 1:]], axis=-1)

    h = n // 2
    a, b, c, d = x[..., :h], cj(x[..., h:]), y[..., :h], cj(y[..., h:])
    return np.concatenate(
        [_onion_mult(a, c) - _onion_mult(d, cj(b)), _onion_mult(cj(a), d) + _onion_mult(c, b)],
        axis=-1,
    )


def _q8_reference(gt: np.ndarray, f: np.ndarray) -> float:
    """Q8 by the literal per-pixel recipe: mirror pad, uint16, standardise, products."""
    _, h, w = gt.shape
    eh, ew = -h % 32, -w % 32
    g = round_uint16(np.pad(gt, ((0, 0), (0, eh), (0, ew)), mode="symmetric"))
    f = round_uint16(np.pad(f, ((0, 0), (0, eh), (0, ew)), mode="symmetric"))
    vals = []
    for i in range(0, h + eh, 32):
        for j in range(0, w + ew, 32):
            a = g[:, i : i + 32, j : j + 32].reshape(8, -1).T.copy()
            b = f[:, i : i + 32, j : j + 32].reshape(8, -1).T.copy()
            n = a.shape[0]
            for k in range(8):
                m, s = a[:, k].mean(), a[:, k].std(ddof=1)
                s = s if s > 0 else np.finfo(float).eps
                a[:, k] = (a[:, k] - m) / s + 1
                b[:, k] = b[:, k] + 1 if m == 0 else (b[:, k] - m) / s + 1
            b[:, 1:] *= -1  # conjugate
            ma, mb = a.mean(0), b.mean(0)
            s_ab = n / (n - 1) * (_onion_mult(a, b).mean(0) - _onion_mult(ma, mb))
            va = n / (n - 1) * np.mean(np.sum((a - ma) ** 2, 1))
            vb = n / (n - 1) * np.mean(np.sum((b - mb) ** 2, 1))
            na, nb = np.linalg.norm(ma), np.linalg.norm(mb)
            vals.append(4 * np.linalg.norm(s_ab) * na * nb / ((va + vb) * (na**2 + nb**2)))
    return float(np.mean(vals))


def test_q8_with_mirror_extension_matches_literal_octonion_reference() -> None:
    gt = scene(9, 8, 45, 70)  # neither side a multiple of 32: mirrored rows/cols
    fused = np.roll(noisy(gt, 2, 30.0), 1, axis=1)
    value = q2n(fused, gt)
    assert 0.5 < value < 0.999
    assert value == pytest.approx(_q8_reference(gt, fused), rel=1e-10)


def test_q2n_flat_blocks_follow_the_special_cases() -> None:
    gt = np.full((4, 32, 32), 500.0)
    assert q2n(gt, gt) == 1.0  # s_g^2 + s_f^2 = 0 and equal means
    # a fused image flat at another level: 2|m_g||m_f| / (|m_g|^2 + |m_f|^2) with the
    # standardised means m_g = (1,1,1,1) and m_f = ((600-500)/eps + 1, ...)
    eps = np.finfo(float).eps
    mf = (100.0 / eps + 1) * 2.0
    assert q2n(gt + 100.0, gt) == pytest.approx(2 * 2.0 * mf / (4.0 + mf**2), rel=1e-12)


def test_round_uint16_is_matlab_rounding_with_saturation() -> None:
    x = np.array([0.49999999999999994, 0.5, 1.5, 2.5, -0.4, -7.0, 65534.5, 1e6])
    assert round_uint16(x).tolist() == [0, 1, 2, 3, 0, 0, 65535, 65535]


# --------------------------------------------------------------------------- Q, SCC, SSIM


def test_q_avg_matches_brute_force_windows() -> None:
    gt = scene(10, 2, 40, 37)
    fused = noisy(gt, 3, 30.0)
    ref = []
    for b in range(2):
        vals = []
        for i in range(40 - 31):
            for j in range(37 - 31):
                x = gt[b, i : i + 32, j : j + 32].ravel()
                y = fused[b, i : i + 32, j : j + 32].ravel()
                c = np.cov(x, y)
                mx, my = x.mean(), y.mean()
                vals.append(4 * c[0, 1] * mx * my / ((c[0, 0] + c[1, 1]) * (mx**2 + my**2)))
        ref.append(np.mean(vals))
    assert q_avg(fused, gt) == pytest.approx(np.mean(ref), rel=1e-10)


def test_uiqi_special_cases() -> None:
    flat = np.full((32, 32), 7.0)
    tex = scene(11, 1, 32, 32)[0]
    assert uiqi(flat, flat) == 1.0
    assert uiqi(flat, flat * 3) == pytest.approx(2 * 7 * 21 / (49 + 441), rel=1e-15)
    assert uiqi(np.zeros((32, 32)), np.zeros((32, 32))) == 1.0
    assert uiqi(flat, tex) == 0.0
    assert uiqi(tex, tex) == pytest.approx(1.0, abs=1e-14)
    x, y = tex.ravel(), (tex * 0.5 + 100).ravel()
    c = np.cov(x, y)
    expect = (
        4 * c[0, 1] * x.mean() * y.mean() / ((c[0, 0] + c[1, 1]) * (x.mean() ** 2 + y.mean() ** 2))
    )
    assert uiqi(tex, tex * 0.5 + 100) == pytest.approx(expect, rel=1e-12)


def _scc_reference(f: np.ndarray, g: np.ndarray) -> float:
    k = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])

    def grad(x: np.ndarray) -> np.ndarray:
        x = x[1:-1, 1:-1]
        gy = ndimage.correlate(x, k, mode="constant")
        gx = ndimage.correlate(x, k.T, mode="constant")
        return np.sqrt(gx**2 + gy**2)

    a = np.stack([grad(b) for b in f])
    b = np.stack([grad(b) for b in g])
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def test_shift_lowers_scc_and_matches_scipy_reference() -> None:
    gt = scene(12, 3, 50, 44)
    shifted = np.roll(gt, 1, axis=2)
    value = scc(shifted, gt)
    assert value < 0.999
    assert value == pytest.approx(_scc_reference(shifted, gt), rel=1e-12)


def test_ssim_matches_gaussian_window_reference() -> None:
    gt = scene(13, 2, 30, 34)
    fused = noisy(gt, 4, 60.0)
    x = np.arange(11) - 5.0
    w = np.exp(-(x[:, None] ** 2 + x[None] ** 2) / (2 * 1.5**2))
    w /= w.sum()
    c1, c2 = (0.01 * 2047) ** 2, (0.03 * 2047) ** 2
    ref = []
    for b in range(2):
        X, Y = gt[b], fused[b]

        def filt(a: np.ndarray) -> np.ndarray:
            return ndimage.correlate(a, w, mode="constant")[5:-5, 5:-5]

        mx, my = filt(X), filt(Y)
        sx, sy, sxy = filt(X * X) - mx**2, filt(Y * Y) - my**2, filt(X * Y) - mx * my
        m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sx + sy + c2))
        ref.append(m.mean())
    assert ssim(fused, gt, 11) == pytest.approx(np.mean(ref), rel=1e-12)
    assert ssim(fused, gt, 11) < 1.0


# --------------------------------------------------------------------------- full resolution


def _toolbox_uqi(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.ravel(), y.ravel()
    c = np.cov(x, y)
    return (
        4 * c[0, 1] * x.mean() * y.mean() / ((c[0, 0] + c[1, 1]) * (x.mean() ** 2 + y.mean() ** 2))
    )


def test_d_lambda_and_d_s_match_block_loops() -> None:
    ratio, b = 4, 3
    ms_exp = scene(14, b, 64, 96)
    pan = ms_exp.mean(axis=0) + np.random.default_rng(5).normal(0, 20, (64, 96))
    fused = ms_exp + 0.4 * (pan - ms_exp.mean(axis=0)) + noisy(np.zeros_like(ms_exp), 6, 10.0)
    lp = pan_lowpass(pan, ratio)
    blocks = [(i, j) for i in (0, 32) for j in (0, 32, 64)]

    def q(x: np.ndarray, y: np.ndarray) -> float:
        return float(
            np.mean(
                [
                    _toolbox_uqi(x[i : i + 32, j : j + 32], y[i : i + 32, j : j + 32])
                    for i, j in blocks
                ]
            )
        )

    dl = np.mean(
        [
            abs(q(fused[i], fused[j]) - q(ms_exp[i], ms_exp[j]))
            for i in range(b)
            for j in range(i + 1, b)
        ]
    )
    ds = np.mean([abs(q(fused[k], pan) - q(ms_exp[k], lp)) for k in range(b)])
    assert d_lambda(fused, ms_exp) == pytest.approx(dl, rel=1e-10)
    assert d_s(fused, pan, ms_exp, ratio) == pytest.approx(ds, rel=1e-10)
    assert qnr(fused, pan, ms_exp, ratio) == pytest.approx((1 - dl) * (1 - ds), rel=1e-10)
    gains = [0.34, 0.32, 0.30]
    dk = 1 - q2n(mtf_filter_bands(fused, gains, ratio), ms_exp)
    assert d_lambda_k(fused, ms_exp, ratio, gains) == pytest.approx(dk, rel=1e-12)
    assert hqnr(fused, pan, ms_exp, ratio, gains) == pytest.approx((1 - dk) * (1 - ds), rel=1e-10)
    assert 0 < dl < 1 and 0 < ds < 1 and 0 < dk < 1
