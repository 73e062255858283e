"""The classical methods in the method protocol (:mod:`models.protocol`).

``prepare`` runs the two-pass fit contract of :class:`models.base.ClassicalMethod`: the
executor's :class:`models.protocol.TileScan` streams every tile once through
``fit_tile`` and sums the additive partials in tile order, ``fit_finish`` turns them
into the global coefficients; ``apply`` then fuses any tile with them, so the tiled
result equals the whole-image result. Classical methods tile exactly (grid tiles with
the method's halo) and work in DN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.base import ClassicalMethod, Tile
from models.protocol import EXACT, MethodSpec, PrepareContext
from models.registry import Entry, ModelInfo, register_model


@dataclass
class PreparedClassical:
    """A classical method with its fitted coefficients (None when it needs none)."""

    name: str
    spec: MethodSpec
    method: ClassicalMethod
    coeffs: Any = None
    warnings: list[str] = field(default_factory=list)
    device: Any = None

    def tags(self) -> dict[str, str]:
        return {}

    def apply(self, batch: Tile) -> np.ndarray:
        """The fused tile (B, H, W) in DN, halo included (the executor crops the core)."""
        return self.method.apply(batch, self.coeffs)


def check_classical(entry: Entry, scene: Any, context: PrepareContext) -> None:
    """Nothing beyond the registry's band and ratio limits: no weights, no files."""


def prepare_classical(entry: Entry, scene: Any, context: PrepareContext) -> PreparedClassical:
    """Build the method and run its fit pass over the scene when it has one."""
    method: ClassicalMethod = entry.factory(**context.fuse.options)
    halo = entry.info.halo(scene.ratio)
    coeffs = None
    if entry.info.needs_fit:
        if context.scan is None:
            raise RuntimeError(f"{entry.info.name} needs a fit pass: prepare it with a scan")
        totals = context.scan.sum(halo, method.fit_tile)
        coeffs = method.fit_finish(totals, context.fuse)
    spec = MethodSpec(halo=halo, tiling=EXACT)
    return PreparedClassical(entry.info.name, spec, method, coeffs)


def register_classical(info: ModelInfo) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """:func:`models.registry.register_model` with the classical protocol phases."""
    return register_model(info, check=check_classical, prepare=prepare_classical)
