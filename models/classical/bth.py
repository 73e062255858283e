"""BT-H: the Brovey transform with haze correction (component substitution family).

Toolbox ``BroveyRegHazeMin.m`` of Vivone et al., "A new benchmark based on recent
advances in multispectral pansharpening", IEEE GRSM 9(1), 2021; Lolli, Alparone,
Garzelli & Vivone, "Haze correction for contrast-based multispectral pansharpening",
IEEE GRSL 14(12), 2017.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import ClassicalMethod, FuseContext, Tile
from models.classical.common import (
    Moments,
    eroded_core,
    filled,
    gauss_lowpass,
    moment_sums,
    out_dtype,
    ratio_or,
    zero_invalid,
)
from models.classical.cs import ms_pan_sums
from models.classical.guards import min_side, modulation, require_pixels
from models.classical.histogram import histogram, minimum, percentile
from models.classical.method import register_classical
from models.registry import ModelInfo
from physics.mtf import MTF_HALF

Coeffs = dict[str, Any]

#: BT-H haze fractions of the 1st percentile for 4-band (B, G, R, NIR) data (Lolli 2017).
BTH_HAZE_4 = (0.95, 0.45, 0.40, 0.05)
BTH_PERCENTILE = 1.0


@register_classical(
    ModelInfo(
        name="bt-h",
        title="BT-H (Brovey with haze correction)",
        family="cs",
        reference="Lolli et al., IEEE GRSL 14(12), 2017; Vivone et al., IEEE GRSM 2021",
        halo=lambda ratio: MTF_HALF,
        needs_fit=True,
    )
)
class BTH(ClassicalMethod):
    """Brovey transform with haze correction (toolbox ``BroveyRegHazeMin.m``).

    Haze L_b: for 4 bands, [0.95, 0.45, 0.40, 0.05] times the 1st percentile of each
    band (MATLAB ``prctile``, from a global fixed-bin histogram), otherwise each band's
    minimum. Weights alpha: least squares, without constant, of the Gaussian-low-passed
    PAN (``LPfilterGauss``, GNyq 0.3) on the MS at PAN scale. Then
    I = sum_b alpha_b (MS_b - L_b), P_eq = (P - mean LP(P)) std(I)/std(LP(P)) + mean(I)
    and F_b = max(MS_b - L_b, 0) P_eq / I + L_b (Lolli 2017, haze-corrected
    Brovey). The haze sits at the darkest values, so I is near zero on dark pixels by
    design: P_eq / I goes through :func:`~models.classical.guards.modulation` (the
    toolbox's value within [0, MAX_MODULATION], capped above, 1 where negative), which
    keeps every output in [L_b, MAX_MODULATION max(MS_b - L_b, 0) + L_b].
    """

    name = "bt-h"

    def fit_tile(self, tile: Tile) -> dict[str, np.ndarray]:
        pan, ms = zero_invalid(tile)
        core = tile.core_valid()
        lp = gauss_lowpass(pan, tile.ctx.ratio)
        out = ms_pan_sums(tile)
        out.update(moment_sums("lp", [*ms, lp], eroded_core(tile, MTF_HALF)))
        for b in range(ms.shape[0]):
            out[f"hist{b}"] = histogram(ms[b][core], tile.ctx)
        return out

    def fit_finish(self, totals: dict[str, np.ndarray], ctx: FuseContext) -> Coeffs:
        nb = ctx.n_bands
        require_pixels(self.name, totals, "c", 2, min_side(ctx.ratio, 2))
        # alpha: least squares of B unknowns, without constant
        require_pixels(self.name, totals, "lp", nb, min_side(ctx.ratio, nb, pan_half=MTF_HALF))
        mom = Moments.from_totals(totals, "c")
        lpm = Moments.from_totals(totals, "lp")
        if nb == 4:
            haze = np.array(
                [
                    f * percentile(totals[f"hist{b}"], BTH_PERCENTILE, ctx)
                    for b, f in enumerate(BTH_HAZE_4)
                ]
            )
        else:
            haze = np.array([minimum(totals[f"hist{b}"], ctx) for b in range(nb)])
        alpha = np.linalg.lstsq(lpm.raw[:nb, :nb], lpm.raw[:nb, nb], rcond=None)[0]
        cov_ms = mom.cov[:nb, :nb]
        mean_i = float(alpha @ (mom.mean[:nb] - haze))
        std_i = float(np.sqrt(max(alpha @ cov_ms @ alpha, 0.0)))
        return {
            "haze": haze,
            "alpha": alpha,
            "mean_lp": float(lpm.mean[nb]),
            "gain": ratio_or(std_i, lpm.std()[nb]),
            "mean_i": mean_i,
            "mean_p": float(mom.mean[nb]),
            "mean_ms": mom.mean[:nb].copy(),
        }

    def apply(self, tile: Tile, coeffs: Coeffs) -> np.ndarray:
        pan, ms = filled(tile, coeffs["mean_p"], coeffs["mean_ms"])
        haze = np.asarray(coeffs["haze"]).reshape(-1, 1, 1)
        hazeless = ms - haze
        intensity = np.tensordot(np.asarray(coeffs["alpha"]), hazeless, axes=1)
        pan_eq = (pan - coeffs["mean_lp"]) * coeffs["gain"] + coeffs["mean_i"]
        factor = modulation(pan_eq, intensity)
        fused = np.maximum(hazeless, 0.0) * factor[None] + haze
        return out_dtype(tile, fused)
