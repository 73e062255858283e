"""Regression-based component substitution: BDSD-PC and PRACS.

Both estimate band-dependent coefficients by least squares on global statistics
(Vivone et al., IEEE GRSM 2021, the "CS" methods of its benchmark). Their ``apply`` is
pointwise; the halo only serves the filters their fit chains.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import ClassicalMethod, FuseContext, Tile
from models.classical.common import (
    Moments,
    bicubic_down_up,
    bicubic_reach,
    erode,
    eroded_core,
    filled,
    moment_sums,
    out_dtype,
    ratio_or,
    sign_constrained_lstsq,
    zero_invalid,
)
from models.classical.guards import count_sums, min_side, modulation, require_pixels
from models.classical.method import register_classical
from models.registry import ModelInfo
from physics.mtf import MTF_HALF, mtf_filter, mtf_filter_bands

Coeffs = dict[str, Any]


def bdsd_halo(ratio: int) -> int:
    """MTF filter at MS scale (20 MS pixels = 20 ratio PAN pixels) plus one MS pixel."""
    return MTF_HALF * ratio + ratio


@register_classical(
    ModelInfo(
        name="bdsd-pc",
        title="BDSD-PC (band-dependent spatial detail, physically constrained)",
        family="cs",
        reference="Vivone, IEEE TGRS 57(9), 2019; Vivone et al., IEEE GRSM 2021 (BDSD_PC.m)",
        halo=bdsd_halo,
        needs_fit=True,
    )
)
class BDSDPC(ClassicalMethod):
    """BDSD with sign constraints (Vivone 2019; toolbox ``BDSD_PC.m``).

    At reduced scale, for each band b, gamma_b = argmin ||H gamma - (MS_b - MS~_b)||^2
    with H = [P~, MS~_1..MS~_B], subject to gamma_P >= 0 and gamma_MS <= 0, where MS~
    is the MS filtered by the sensor MTF (at MS scale) and P~ the PAN filtered by the
    PAN MTF and decimated at the MS sample positions. Then, at full scale,
    F_b = MS_b + gamma_b,0 P + sum_c gamma_b,c MS_c.

    The toolbox takes ``imresize(EXP, 1/ratio)`` as the reduced-scale MS; here the
    original MS samples (``tile.samples(tile.ms)``) play that role, on the same grid as
    the decimated PAN. The normal equations are additive sums over the core samples
    whose MS-scale and PAN-scale MTF footprints are valid: 20 MS pixels from nodata and
    the edges, so an MS under 43 x 43 (B = 4) has too few of them for the B + 1
    unknowns, and the fit refuses rather than return gamma = 0 (EXP's output).
    """

    name = "bdsd-pc"

    def fit_tile(self, tile: Tile) -> dict[str, np.ndarray]:
        ctx = tile.ctx
        nb = ctx.n_bands
        pan, ms = zero_invalid(tile)
        ms_lr = tile.samples(ms)
        ms_lr_lp = mtf_filter_bands(ms_lr, ctx.ms_gains[:nb], ctx.ratio)
        pan_lr = tile.samples(mtf_filter(pan, ctx.pan_gain, ctx.ratio))
        lr_valid = erode(tile.samples(tile.valid), MTF_HALF)
        mask = lr_valid & tile.samples(eroded_core(tile, MTF_HALF))
        return {**moment_sums("h", [pan_lr, *ms_lr_lp, *ms_lr], mask), **count_sums(tile)}

    def fit_finish(self, totals: dict[str, np.ndarray], ctx: FuseContext) -> Coeffs:
        nb = ctx.n_bands
        side = min_side(ctx.ratio, nb + 1, pan_half=MTF_HALF, ms_half=MTF_HALF, lr=True)
        require_pixels(self.name, totals, "h", nb + 1, side)
        raw = Moments.from_totals(totals, "h").raw
        gram = raw[: nb + 1, : nb + 1]
        signs = np.array([1.0] + [-1.0] * nb)
        gamma = np.zeros((nb, nb + 1))
        for b in range(nb):
            rhs = raw[: nb + 1, nb + 1 + b] - raw[: nb + 1, 1 + b]
            gamma[b] = sign_constrained_lstsq(gram, rhs, signs)
        mom = Moments.from_totals(totals, "h")
        return {"gamma": gamma, "mean_p": float(mom.mean[0]), "mean_ms": mom.mean[nb + 1 :].copy()}

    def apply(self, tile: Tile, coeffs: Coeffs) -> np.ndarray:
        pan, ms = filled(tile, coeffs["mean_p"], coeffs["mean_ms"])
        gamma = np.asarray(coeffs["gamma"])
        detail = gamma[:, 0].reshape(-1, 1, 1) * pan[None] + np.tensordot(gamma[:, 1:], ms, axes=1)
        return out_dtype(tile, ms + detail)


#: PRACS beta (toolbox default, "for 11-bit data"; the toolbox suggests 1.95 for 8-bit).
PRACS_BETA = 0.95


def pracs_halo(ratio: int) -> int:
    """Bicubic decimation/interpolation of the PAN and the MS (fit only)."""
    return bicubic_reach(ratio)


@register_classical(
    ModelInfo(
        name="pracs",
        title="PRACS (partial replacement adaptive CS)",
        family="cs",
        reference="Choi, Yu & Kim, IEEE TGRS 49(1), 2011; Vivone et al., IEEE GRSM 2021",
        halo=pracs_halo,
        needs_fit=True,
    )
)
class PRACS(ClassicalMethod):
    """Partial replacement adaptive CS (Choi 2011; toolbox ``PRACS.m``).

    With hm_k = (MS_k - m_k) std(P)/std(MS_k) + mean(P) (MS matched to the PAN),
    LP = bicubic decimation/interpolation (``imresize`` by 1/ratio then ratio):

    1. I_L = OLS fit, with constant, of LP(P) on [hm_1..hm_B];
    2. cc_k = corr(I_L, hm_k); I_h,k = cc_k P + (1 - cc_k) hm_k (partial replacement);
    3. I_L',k = OLS fit of LP(I_h,k) on [hm]; delta_k = I_h,k - I_L',k - mean difference;
    4. w_k = beta corr(I_L',k, MS_k) std(MS_k) / mean_j std(MS_j), beta = 0.95;
    5. L_I,k = 1 - |1 - cc_k MS_k / I_L',k|; F_k = MS_k + w_k L_I,k delta_k.

    Regressing on hm or on MS gives the same fitted values (hm is affine in MS), and
    LP is linear with LP(1) = 1, so LP(I_h,k) = cc_k LP(P) + (1 - cc_k)(s_k LP(MS_k) +
    const): every quantity follows from one pass of moments of [MS, P] over the core
    valid pixels and of [MS, LP(P), LP(MS)] over those whose bicubic footprint is valid.
    The toolbox clips hm_k at 0 first; that needs hm's global statistics before the
    sums, i.e. a second pass, and is left out (it only touches pixels more than
    mean(P)/std(P) standard deviations below a band's mean).
    """

    name = "pracs"

    def fit_tile(self, tile: Tile) -> dict[str, np.ndarray]:
        pan, ms = zero_invalid(tile)
        out = moment_sums("c", [*ms, pan], tile.core_valid())
        out.update(count_sums(tile))
        lp = bicubic_down_up(tile, np.concatenate([pan[None], ms]))
        mask = eroded_core(tile, bicubic_reach(tile.ctx.ratio))
        out.update(moment_sums("e", [*ms, *lp], mask))
        return out

    def fit_finish(self, totals: dict[str, np.ndarray], ctx: FuseContext) -> Coeffs:
        nb = ctx.n_bands
        require_pixels(self.name, totals, "c", 2, min_side(ctx.ratio, 2))
        # OLS of B slopes and an intercept over the E set
        side = min_side(ctx.ratio, nb + 1, pan_half=bicubic_reach(ctx.ratio))
        require_pixels(self.name, totals, "e", nb + 1, side)
        beta = float(self.options.get("beta", PRACS_BETA))
        mom = Moments.from_totals(totals, "c")
        ems = Moments.from_totals(totals, "e")
        m, mean_p = mom.mean[:nb], float(mom.mean[nb])
        cov = mom.cov[:nb, :nb]
        std_ms = np.sqrt(np.maximum(np.diag(cov), 0.0))
        std_p = float(mom.std()[nb])
        xs = list(range(nb))

        def fit(y: int) -> tuple[float, np.ndarray]:
            """Intercept and slopes of the OLS of variable y on [1, MS] over the E set."""
            slopes = np.linalg.lstsq(ems.cov[np.ix_(xs, xs)], ems.cov[xs, y], rcond=None)[0]
            return float(ems.mean[y] - slopes @ ems.mean[:nb]), slopes

        def corr_with_band(slopes: np.ndarray, k: int) -> float:
            den = np.sqrt(max(slopes @ cov @ slopes, 0.0)) * std_ms[k]
            return ratio_or(float(slopes @ cov[:, k]), den)

        i_pan, sl_pan = fit(nb)  # regression of LP(P): I_L
        s = np.array([ratio_or(std_p, sd) for sd in std_ms])
        cc = np.array([corr_with_band(sl_pan, k) for k in range(nb)])
        icpt = np.zeros(nb)
        slopes = np.zeros((nb, nb))
        for k in range(nb):
            i_ms, sl_ms = fit(nb + 1 + k)
            icpt[k] = cc[k] * i_pan + (1 - cc[k]) * (s[k] * i_ms + mean_p - s[k] * m[k])
            slopes[k] = cc[k] * sl_pan + (1 - cc[k]) * s[k] * sl_ms
        mean_il = icpt + slopes @ m
        mean_std = float(std_ms.mean())
        w = np.array(
            [beta * corr_with_band(slopes[k], k) * ratio_or(std_ms[k], mean_std) for k in range(nb)]
        )
        return {
            "cc": cc,
            "s": s,
            "icpt": icpt,
            "slopes": slopes,
            "mean_il": mean_il,
            "w": w,
            "mean_p": mean_p,
            "mean_ms": m.copy(),
        }

    def apply(self, tile: Tile, coeffs: Coeffs) -> np.ndarray:
        pan, ms = filled(tile, coeffs["mean_p"], coeffs["mean_ms"])
        col = lambda v: np.asarray(v).reshape(-1, 1, 1)  # noqa: E731
        cc, s, m = col(coeffs["cc"]), col(coeffs["s"]), col(coeffs["mean_ms"])
        mean_p = coeffs["mean_p"]
        hm = (ms - m) * s + mean_p
        i_h = cc * pan[None] + (1 - cc) * hm
        i_l = col(coeffs["icpt"]) + np.tensordot(np.asarray(coeffs["slopes"]), ms, axes=1)
        delta = i_h - i_l - (mean_p - col(coeffs["mean_il"]))
        # MS_k / I_L',k guarded as every ratio of images (guards.modulation): capped at
        # MAX_MODULATION; negative or 0/0 gives 0, so L_I = 0, no detail injected there
        li = 1.0 - np.abs(1.0 - cc * modulation(ms, i_l, fill=0.0))
        fused = ms + col(coeffs["w"]) * li * delta
        return out_dtype(tile, fused)
