"""Multiresolution analysis (MRA): SFIM, MTF-GLP, MTF-GLP-HPM, MTF-GLP-FS, AWLP.

MRA methods inject the PAN's high frequencies, P - P_L, with P_L a low-pass of the
PAN (Vivone et al., "A new benchmark based on recent advances in multispectral
pansharpening", IEEE GRSM 9(1), 2021 (GRSM21), MRA section):

    F_b = MS_b + G_b (P_b - P_L,b)

additively (G_b = 1 or a regression gain) or multiplicatively (G_b = MS_b / P_L,b,
"HPM"). P_b is the PAN equalised to band b in mean and std where the toolbox does so.
The low-pass filters are local and computed over the whole tile, halo included; the
equalisation means/stds and the FS gains are global (two-pass contract).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import ClassicalMethod, FuseContext, Tile
from models.classical.common import (
    Moments,
    bicubic_down_up,
    bicubic_reach,
    eroded_core,
    filled,
    gauss_lowpass,
    glp_lowpass,
    glp_lowpass_pan,
    glp_reach,
    moment_sums,
    out_dtype,
    ratio_or,
    starck_murtagh_half,
    starck_murtagh_lowpass,
    zero_invalid,
)
from models.classical.guards import count_sums, min_side, modulation, require_pixels
from models.classical.method import register_classical
from models.registry import ModelInfo
from physics.mtf import MTF_HALF


def _ndimage():
    """scipy.ndimage, imported on first use (it costs ~0.4 s of CLI start-up)."""
    from scipy import ndimage

    return ndimage


Coeffs = dict[str, Any]


def _col(v: Any) -> np.ndarray:
    return np.asarray(v, dtype=np.float64).reshape(-1, 1, 1)


def _equalisation(totals: dict[str, np.ndarray], ctx: FuseContext, lp_prefix: str | None) -> Coeffs:
    """Gains/offsets of P_b = (P - mean P) std(MS_b) / std(X) + mean(MS_b).

    X is the PAN itself (``lp_prefix=None``) or its low-pass whose moments were summed
    under ``lp_prefix`` (toolbox: ``LPfilterGauss`` for MTF-GLP(-HPM), the bicubic
    decimation/interpolation for AWLP).
    """
    nb = ctx.n_bands
    mom = Moments.from_totals(totals, "c")
    std_x = mom.std()[nb] if lp_prefix is None else Moments.from_totals(totals, lp_prefix).std()[0]
    std_ms = mom.std()[:nb]
    return {
        "gain": np.array([ratio_or(s, std_x) for s in std_ms]),
        "mean_p": float(mom.mean[nb]),
        "mean_ms": mom.mean[:nb].copy(),
    }


def _equalised_pan(pan: np.ndarray, k: Coeffs) -> np.ndarray:
    """(B, H, W) cube of P_b = (P - mP) gain_b + mean(MS_b)."""
    return (pan[None] - k["mean_p"]) * _col(k["gain"]) + _col(k["mean_ms"])


def _ms_pan_sums(tile: Tile) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    pan, ms = zero_invalid(tile)
    out = moment_sums("c", [*ms, pan], tile.core_valid())
    out.update(count_sums(tile))
    return pan, ms, out


def _require_std(
    method: str, totals: dict[str, np.ndarray], ctx: FuseContext, prefix: str, pan_half: int
) -> None:
    """Refuse unless ``prefix`` (a low-pass whose footprint is ``pan_half``) has the two
    pixels a standard deviation needs, and the plain moments too."""
    require_pixels(method, totals, "c", 2, min_side(ctx.ratio, 2))
    require_pixels(method, totals, prefix, 2, min_side(ctx.ratio, 2, pan_half=pan_half))


def sfim_size(ratio: int) -> int:
    """Box size of the toolbox SFIM: ratio, made odd (ratio + 1) when even."""
    return ratio + 1 if ratio % 2 == 0 else ratio


@register_classical(
    ModelInfo(
        name="sfim",
        title="SFIM (smoothing filter-based intensity modulation)",
        family="mra",
        reference="Liu, IJRS 21(18), 2000; Vivone et al., IEEE TGRS 2015 (SFIM.m)",
        halo=lambda ratio: sfim_size(ratio) // 2 + ratio,
        needs_fit=True,
    )
)
class SFIM(ClassicalMethod):
    """F_b = MS_b P_b / box(P_b) (Liu 2000; toolbox ``SFIM.m``).

    P_b is the PAN equalised to band b (mean/std); box is the ``fspecial('average')``
    filter of odd size (ratio + 1 for even ratios) with replicated borders. The box is
    normalised, so box(P_b) = (box(P) - mP) gain_b + mean(MS_b) exactly. The quotient
    is :func:`~models.classical.guards.modulation`: the toolbox's value within
    [0, MAX_MODULATION], capped there where box(P_b) is almost nothing, 1 (the MS kept)
    where the two have opposite signs.
    """

    name = "sfim"

    def fit_tile(self, tile: Tile) -> dict[str, np.ndarray]:
        return _ms_pan_sums(tile)[2]

    def fit_finish(self, totals: dict[str, np.ndarray], ctx: FuseContext) -> Coeffs:
        require_pixels(self.name, totals, "c", 2, min_side(ctx.ratio, 2))
        return _equalisation(totals, ctx, None)

    def apply(self, tile: Tile, coeffs: Coeffs) -> np.ndarray:
        pan, ms = filled(tile, coeffs["mean_p"], coeffs["mean_ms"])
        box = _ndimage().uniform_filter(pan, size=sfim_size(tile.ctx.ratio), mode="nearest")
        fused = ms * modulation(_equalised_pan(pan, coeffs), _equalised_pan(box, coeffs))
        return out_dtype(tile, fused)


def glp_halo(ratio: int) -> int:
    """GLP low-pass: MTF 20 + 23-tap re-interpolation 11 ratio + ratio (sample phase)."""
    return glp_reach(ratio)


class _GLPEqualised(ClassicalMethod):
    """Shared fit of MTF-GLP and MTF-GLP-HPM: the PAN equalisation of the toolbox.

    P_b = (P - mean P) std(MS_b) / std(LPfilterGauss(P)) + mean(MS_b); the std of the
    Gaussian-low-passed PAN is taken over the core pixels whose 41x41 footprint is valid.
    """

    def fit_tile(self, tile: Tile) -> dict[str, np.ndarray]:
        pan, _, out = _ms_pan_sums(tile)
        lp = gauss_lowpass(pan, tile.ctx.ratio)
        out.update(moment_sums("g", [lp], eroded_core(tile, MTF_HALF)))
        return out

    def fit_finish(self, totals: dict[str, np.ndarray], ctx: FuseContext) -> Coeffs:
        _require_std(self.name, totals, ctx, "g", MTF_HALF)
        return _equalisation(totals, ctx, "g")

    def details(self, tile: Tile, coeffs: Coeffs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """MS, the equalised PAN cube and its per-band MTF-GLP low-pass."""
        pan, ms = filled(tile, coeffs["mean_p"], coeffs["mean_ms"])
        pan_eq = _equalised_pan(pan, coeffs)
        low = glp_lowpass(tile, pan_eq, tile.ctx.ms_gains[: ms.shape[0]])
        return ms, pan_eq, low


@register_classical(
    ModelInfo(
        name="mtf-glp",
        title="MTF-GLP (additive injection)",
        family="mra",
        reference="Aiazzi et al., PE&RS 72(5), 2006; Vivone et al., IEEE GRSM 2021 (MTF_GLP.m)",
        halo=glp_halo,
        needs_fit=True,
    )
)
class MTFGLP(_GLPEqualised):
    """F_b = MS_b + P_b - GLP_b(P_b) (the MRA form with G_b = 1).

    GLP_b: the band's MTF-matched Gaussian (gain ``ms_gains[b]`` at Nyquist), decimation
    at the MS sample positions, 23-tap re-interpolation (Aiazzi 2006).
    """

    name = "mtf-glp"

    def apply(self, tile: Tile, coeffs: Coeffs) -> np.ndarray:
        ms, pan_eq, low = self.details(tile, coeffs)
        return out_dtype(tile, ms + pan_eq - low)


@register_classical(
    ModelInfo(
        name="mtf-glp-hpm",
        title="MTF-GLP-HPM (high-pass modulation)",
        family="mra",
        reference="Aiazzi et al., URBAN 2003 / PE&RS 2006; Vivone et al., IEEE GRSM 2021",
        halo=glp_halo,
        needs_fit=True,
    )
)
class MTFGLPHPM(_GLPEqualised):
    """F_b = MS_b P_b / GLP_b(P_b) (G_b = MS_b / P_L,b; ``MTF_GLP_HPM.m``).

    The quotient is :func:`~models.classical.guards.modulation`: the toolbox's
    ``P_b ./ (GLP_b(P_b) + eps)`` within [0, MAX_MODULATION], capped there where the
    low-pass is almost nothing relative to P_b, 1 (the MS kept) where the two have
    opposite signs or are 0/0. The equalised PAN of a band with gain > 1 goes below zero
    over dark water and its low-pass crosses zero along the shore: unguarded, the output
    reached -1.4e7 on an 8-bit Landsat 7 crop.
    """

    name = "mtf-glp-hpm"

    def apply(self, tile: Tile, coeffs: Coeffs) -> np.ndarray:
        ms, pan_eq, low = self.details(tile, coeffs)
        return out_dtype(tile, ms * modulation(pan_eq, low))


@register_classical(
    ModelInfo(
        name="mtf-glp-fs",
        title="MTF-GLP-FS (full-scale regression gains)",
        family="mra",
        reference="Vivone, Restaino & Chanussot, IEEE TIP 27(7), 2018; Vivone et al., GRSM 2021",
        halo=glp_halo,
        needs_fit=True,
    )
)
class MTFGLPFS(ClassicalMethod):
    """F_b = MS_b + g_b (P - GLP_b(P)), g_b = cov(MS_b, P) / cov(GLP_b(P), P).

    Full-scale regression injection gains (Vivone 2018; ``MTF_GLP_FS.m``), no
    PAN equalisation. Both covariances are summed over the core pixels whose GLP
    footprint is valid.
    """

    name = "mtf-glp-fs"

    def fit_tile(self, tile: Tile) -> dict[str, np.ndarray]:
        nb = tile.ctx.n_bands
        pan, ms = zero_invalid(tile)
        low = glp_lowpass_pan(tile, pan, tile.ctx.ms_gains[:nb])
        mask = eroded_core(tile, glp_reach(tile.ctx.ratio))
        return {**moment_sums("f", [*ms, *low, pan], mask), **count_sums(tile)}

    def fit_finish(self, totals: dict[str, np.ndarray], ctx: FuseContext) -> Coeffs:
        side = min_side(ctx.ratio, 2, pan_half=glp_reach(ctx.ratio))
        require_pixels(self.name, totals, "f", 2, side)
        nb = ctx.n_bands
        mom = Moments.from_totals(totals, "f")
        p = 2 * nb
        gains = np.array([ratio_or(mom.cov[b, p], mom.cov[nb + b, p]) for b in range(nb)])
        return {"g": gains, "mean_p": float(mom.mean[p]), "mean_ms": mom.mean[:nb].copy()}

    def apply(self, tile: Tile, coeffs: Coeffs) -> np.ndarray:
        pan, ms = filled(tile, coeffs["mean_p"], coeffs["mean_ms"])
        low = glp_lowpass_pan(tile, pan, tile.ctx.ms_gains[: ms.shape[0]])
        return out_dtype(tile, ms + _col(coeffs["g"]) * (pan[None] - low))


def awlp_halo(ratio: int) -> int:
    """B3-spline filter bank (apply) and bicubic decimation/interpolation (fit)."""
    return max(starck_murtagh_half(ratio), bicubic_reach(ratio)) + ratio


@register_classical(
    ModelInfo(
        name="awlp",
        title="AWLP (additive wavelet luminance proportional)",
        family="mra",
        reference="Otazu et al., IEEE TGRS 43(10), 2005; Vivone et al., IEEE GRSM 2021 (AWLP.m)",
        halo=awlp_halo,
        needs_fit=True,
    )
)
class AWLP(ClassicalMethod):
    """F_b = MS_b + (MS_b / mean_c MS_c) (P_b - LP(P_b)) (Otazu 2005; toolbox ``AWLP.m``).

    P_b = (P - mean P) std(MS_b) / std(imresize(imresize(P, 1/ratio), ratio)) + mean(MS_b)
    (the GRSM21 toolbox's equalisation, Alparone et al., TGRS 2017); LP is the
    approximation of the undecimated B3-spline filter bank (``ndwt2`` with the
    Starck-Murtagh filters, all detail planes zeroed). LP is normalised, so
    P_b - LP(P_b) = gain_b (P - LP(P)). The proportion MS_b / mean_c MS_c goes through
    :func:`~models.classical.guards.modulation` clamped to [0, B], its exact range for
    non-negative bands, so it is the toolbox's wherever the MS is non-negative.
    """

    name = "awlp"

    def fit_tile(self, tile: Tile) -> dict[str, np.ndarray]:
        pan, _, out = _ms_pan_sums(tile)
        low = bicubic_down_up(tile, pan)
        out.update(moment_sums("b", [low], eroded_core(tile, bicubic_reach(tile.ctx.ratio))))
        return out

    def fit_finish(self, totals: dict[str, np.ndarray], ctx: FuseContext) -> Coeffs:
        _require_std(self.name, totals, ctx, "b", bicubic_reach(ctx.ratio))
        return _equalisation(totals, ctx, "b")

    def apply(self, tile: Tile, coeffs: Coeffs) -> np.ndarray:
        pan, ms = filled(tile, coeffs["mean_p"], coeffs["mean_ms"])
        detail = pan - starck_murtagh_lowpass(pan, tile.ctx.ratio)
        # MS_b / mean_c MS_c lies in [0, B] wherever the bands are non-negative; an EXP
        # undershoot can take the mean through zero, so the same clamp at B guards it
        proportion = modulation(ms, ms.mean(axis=0)[None], limit=float(ms.shape[0]))
        fused = ms + proportion * _col(coeffs["gain"]) * detail[None]
        return out_dtype(tile, fused)
