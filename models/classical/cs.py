"""Component substitution (CS): IHS, GIHS, PCA, GS, GSA.

Definitions follow the toolbox of Vivone et al., "A new benchmark based on recent advances
in multispectral pansharpening", IEEE GRSM 9(1), 2021 (GRSM21 below), whose CS family has
the general form (GRSM21, CS section; Vivone et al., "A critical comparison among
pansharpening algorithms", IEEE TGRS 53(5), 2015, CS section)

    F_b = MS_b + g_b (P - I_L),   I_L = sum_c w_c MS_c + w_0,

with the PAN P matched (mean/std) to I_L except in GSA. IHS, GIHS, PCA, GS and
GSA all reduce to ``F_b = MS_b + g_b (a (P - mean P) - sum_c w_c (MS_c - mean MS_c))``,
so they share :func:`cs_apply` and only differ in how (w, g, a) are estimated. Every
statistic is global (two-pass contract of ``models.base``); ``apply`` is pointwise, so a
tile needs a halo only for the filters the fit uses.

BT-H lives in ``bth.py``, BDSD-PC and PRACS in ``cs_regression.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import ClassicalMethod, FuseContext, Tile
from models.classical.common import (
    Moments,
    eroded_core,
    filled,
    moment_sums,
    out_dtype,
    ratio_or,
    regression_slopes,
    starck_murtagh_half,
    starck_murtagh_lowpass,
    zero_invalid,
)
from models.classical.guards import count_sums, min_side, require_pixels
from models.classical.method import register_classical
from models.registry import ModelInfo

Coeffs = dict[str, Any]


def ms_pan_sums(tile: Tile) -> dict[str, np.ndarray]:
    """Moments of [MS_1..MS_B, P] over the core valid pixels (prefix ``c``), and the
    valid-pixel counts of :func:`~models.classical.guards.count_sums`."""
    pan, ms = zero_invalid(tile)
    return {**moment_sums("c", [*ms, pan], tile.core_valid()), **count_sums(tile)}


def require_moments(method: str, totals: dict[str, np.ndarray], ctx: FuseContext) -> None:
    """Refuse a covariance of [MS, P] from fewer than the two pixels it needs."""
    require_pixels(method, totals, "c", 2, min_side(ctx.ratio, 2), alternative="brovey")


def cs_apply(tile: Tile, k: Coeffs) -> np.ndarray:
    """F_b = MS_b + g_b (a (P - mP) - sum_c w_c (MS_c - m_c)), pointwise.

    ``k`` holds w (B,), g (B,), a, mean_p, mean_ms (B,); invalid pixels are first set to
    the global means so that they stay finite.
    """
    pan, ms = filled(tile, k["mean_p"], k["mean_ms"])
    w = np.asarray(k["w"], dtype=np.float64)
    centred = ms - np.asarray(k["mean_ms"]).reshape(-1, 1, 1)
    detail = k["a"] * (pan - k["mean_p"]) - np.tensordot(w, centred, axes=1)
    fused = ms + np.asarray(k["g"]).reshape(-1, 1, 1) * detail[None]
    return out_dtype(tile, fused)


def _cs_coeffs(mom: Moments, w: np.ndarray, g: np.ndarray, a: float) -> Coeffs:
    nb = w.size
    return {
        "w": w,
        "g": g,
        "a": float(a),
        "mean_p": float(mom.mean[nb]),
        "mean_ms": mom.mean[:nb].copy(),
    }


def _gs_gains(cov_ms: np.ndarray, w: np.ndarray) -> np.ndarray:
    """GS injection gains g_b = cov(I, MS_b) / var(I) for I = sum w_c MS_c (Aiazzi 2007)."""
    var_i = float(w @ cov_ms @ w)
    return (cov_ms @ w) / var_i if var_i > 0 else np.zeros_like(w)


class _IntensityEqualised(ClassicalMethod):
    """IHS/GIHS: F_b = MS_b + (P_eq - I), P_eq = (P - mP) std(I)/std(P) + mean(I).

    The toolbox's ``IHS.m`` (fast IHS of Tu et al., Inf. Fusion 2001, extended to B
    bands, GRSM21 Sec. "CS"): g_b = 1 and the PAN matched to I in mean and std.
    """

    def weights(self, ctx: FuseContext) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_tile(self, tile: Tile) -> dict[str, np.ndarray]:
        return ms_pan_sums(tile)

    def fit_finish(self, totals: dict[str, np.ndarray], ctx: FuseContext) -> Coeffs:
        require_moments(self.name, totals, ctx)
        mom = Moments.from_totals(totals, "c")
        nb = ctx.n_bands
        w = self.weights(ctx)
        std_i = float(np.sqrt(max(w @ mom.cov[:nb, :nb] @ w, 0.0)))
        a = ratio_or(std_i, mom.std()[nb])
        return _cs_coeffs(mom, w, np.ones(nb), a)

    def apply(self, tile: Tile, coeffs: Coeffs) -> np.ndarray:
        return cs_apply(tile, coeffs)


@register_classical(
    ModelInfo(
        name="ihs",
        title="IHS (fast IHS, band-mean intensity)",
        family="cs",
        reference="Tu et al., Inf. Fusion 2001; Vivone et al., IEEE GRSM 2021 (IHS.m)",
        halo=lambda ratio: 0,
        needs_fit=True,
    )
)
class IHS(_IntensityEqualised):
    """Toolbox IHS: I = mean of the bands."""

    name = "ihs"

    def weights(self, ctx: FuseContext) -> np.ndarray:
        return np.full(ctx.n_bands, 1.0 / ctx.n_bands)


@register_classical(
    ModelInfo(
        name="gihs",
        title="GIHS (generalised IHS, spectral-weight intensity)",
        family="cs",
        reference="Tu et al., IEEE GRSL 2004; Vivone et al., IEEE GRSM 2021",
        halo=lambda ratio: 0,
        needs_fit=True,
    )
)
class GIHS(_IntensityEqualised):
    """Generalised IHS: I = sum_b w_b MS_b / sum_b w_b with the pseudo-PAN weights."""

    name = "gihs"

    def weights(self, ctx: FuseContext) -> np.ndarray:
        w = np.asarray(ctx.weights[: ctx.n_bands], dtype=np.float64)
        if w.size != ctx.n_bands or not np.isfinite(w).all() or w.sum() == 0:
            return np.full(ctx.n_bands, 1.0 / ctx.n_bands)
        return w / w.sum()


@register_classical(
    ModelInfo(
        name="pca",
        title="PCA (principal component substitution)",
        family="cs",
        reference="Chavez et al., PE&RS 1991; Vivone et al., IEEE GRSM 2021 (PCA.m)",
        halo=lambda ratio: 0,
        needs_fit=True,
    )
)
class PCA(ClassicalMethod):
    """PC1 of the MS replaced by the PAN matched to PC1 (toolbox ``PCA.m``).

    With W the eigenvectors of the global MS covariance (largest variance first), the
    forward/inverse transform with PC1 := (P - mP) std(PC1)/std(P) and the final mean
    equalisation collapse to F_b = MS_b + W_b1 (P_eq - PC1), PC1 = sum_c W_c1 (MS_c - m_c),
    i.e. w = g = W_1 and a = sqrt(lambda_1) / std(P). The sign of W_1 follows MATLAB's
    ``pca`` (largest-magnitude entry positive), which fixes the result.
    """

    name = "pca"

    def fit_tile(self, tile: Tile) -> dict[str, np.ndarray]:
        return ms_pan_sums(tile)

    def fit_finish(self, totals: dict[str, np.ndarray], ctx: FuseContext) -> Coeffs:
        require_moments(self.name, totals, ctx)
        mom = Moments.from_totals(totals, "c")
        nb = ctx.n_bands
        evals, evecs = np.linalg.eigh(mom.cov[:nb, :nb])
        w1 = evecs[:, -1].copy()
        if w1[np.argmax(np.abs(w1))] < 0:
            w1 = -w1
        a = ratio_or(np.sqrt(max(evals[-1], 0.0)), mom.std()[nb])
        return _cs_coeffs(mom, w1, w1.copy(), a)

    def apply(self, tile: Tile, coeffs: Coeffs) -> np.ndarray:
        return cs_apply(tile, coeffs)


@register_classical(
    ModelInfo(
        name="gs",
        title="GS (Gram-Schmidt, band-mean intensity)",
        family="cs",
        reference="Laben & Brower, US Patent 6,011,875, 2000; Vivone et al., IEEE GRSM 2021",
        halo=lambda ratio: 0,
        needs_fit=True,
    )
)
class GS(ClassicalMethod):
    """Gram-Schmidt with I = band mean (toolbox ``GS.m``; Laben & Brower 2000).

    I0 = I - mean(I); P_eq = (P - mP) std(I)/std(P); g_b = cov(I0, MS_b)/var(I0);
    F_b = MS_b + g_b (P_eq - I0) (the final mean equalisation adds nothing since
    P_eq - I0 has zero mean).
    """

    name = "gs"

    def fit_tile(self, tile: Tile) -> dict[str, np.ndarray]:
        return ms_pan_sums(tile)

    def fit_finish(self, totals: dict[str, np.ndarray], ctx: FuseContext) -> Coeffs:
        require_moments(self.name, totals, ctx)
        mom = Moments.from_totals(totals, "c")
        nb = ctx.n_bands
        w = np.full(nb, 1.0 / nb)
        cov_ms = mom.cov[:nb, :nb]
        a = ratio_or(np.sqrt(max(w @ cov_ms @ w, 0.0)), mom.std()[nb])
        return _cs_coeffs(mom, w, _gs_gains(cov_ms, w), a)

    def apply(self, tile: Tile, coeffs: Coeffs) -> np.ndarray:
        return cs_apply(tile, coeffs)


def gsa_halo(ratio: int) -> int:
    """B3-spline low-pass of the PAN (4 L px) plus one MS pixel for the sample phase."""
    return starck_murtagh_half(ratio) + ratio


@register_classical(
    ModelInfo(
        name="gsa",
        title="GSA (Gram-Schmidt adaptive)",
        family="cs",
        reference="Aiazzi, Baronti & Selva, IEEE TGRS 45(10), 2007; Vivone et al., IEEE GRSM 2021",
        halo=gsa_halo,
        needs_fit=True,
    )
)
class GSA(ClassicalMethod):
    """GS with regressed intensity weights (toolbox ``GSA.m``; Aiazzi 2007).

    The weights come from the least-squares regression, with a constant, of the
    low-passed and decimated PAN on the original MS (``LPfilterPlusDec``: the B3-spline
    approximation, then the pixels at the MS sample positions). Only the slopes matter
    (the constant cancels in I0 = I - mean I), so they are the OLS slopes from the
    covariance of [MS_LR, LP(P)_LR] over the core samples whose low-pass footprint is
    valid. Then g_b = cov(I0, MS_b)/var(I0) at PAN scale and
    F_b = MS_b + g_b ((P - mP) - I0) (the PAN is not rescaled in GSA).
    """

    name = "gsa"

    def fit_tile(self, tile: Tile) -> dict[str, np.ndarray]:
        ratio = tile.ctx.ratio
        pan, ms = zero_invalid(tile)
        lr_mask = tile.samples(eroded_core(tile, starck_murtagh_half(ratio)))
        lp = tile.samples(starck_murtagh_lowpass(pan, ratio))
        ms_lr = tile.samples(ms)
        out = ms_pan_sums(tile)
        out.update(moment_sums("lr", [*ms_lr, lp], lr_mask))
        return out

    def fit_finish(self, totals: dict[str, np.ndarray], ctx: FuseContext) -> Coeffs:
        nb = ctx.n_bands
        require_moments(self.name, totals, ctx)
        # OLS of B slopes and an intercept at the MS samples
        half = starck_murtagh_half(ctx.ratio)
        side = min_side(ctx.ratio, nb + 1, pan_half=half, lr=True)
        require_pixels(self.name, totals, "lr", nb + 1, side, alternative="ihs or brovey")
        mom = Moments.from_totals(totals, "c")
        lr = Moments.from_totals(totals, "lr")
        w = regression_slopes(lr.cov, list(range(nb)), nb)
        return _cs_coeffs(mom, w, _gs_gains(mom.cov[:nb, :nb], w), 1.0)

    def apply(self, tile: Tile, coeffs: Coeffs) -> np.ndarray:
        return cs_apply(tile, coeffs)
