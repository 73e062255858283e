"""EXP: the MS interpolated onto the PAN grid, the reference baseline.

With the default ``--resampling exp`` this is the toolbox's 23-tap polynomial
interpolator (quality.md, "23-tap interpolation"); the engine has already done the work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import ClassicalMethod, Tile
from models.classical.method import register_classical
from models.registry import ModelInfo


@register_classical(
    ModelInfo(
        name="exp",
        title="EXP (23-tap interpolation)",
        family="interp",
        reference="Aiazzi et al., IEEE TGRS 40(10), 2002; Vivone et al., IEEE GRSM 2021",
        halo=lambda ratio: 0,
    )
)
class Exp(ClassicalMethod):
    name = "exp"

    def apply(self, tile: Tile, coeffs: Any) -> np.ndarray:
        return tile.ms
