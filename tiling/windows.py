"""Cutting a scene into tiles with a halo.

Why the halo: a method's output at a pixel depends on every input pixel within its
receptive field (the MTF filter's 20 pixels, the GLP chain's decimation and 23-tap
re-interpolation ...). A tile read with a halo at least that wide has, in its core,
exactly the values the whole-image computation would give; the halo is computed and
thrown away. Outside the scene, the halo holds edge-replicated PAN values, so an edge
tile sees exactly what the whole image (processed as one tile) sees.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TileSpec:
    """One tile: core and read windows in output-grid pixels (row, col, height, width).

    The read window may extend past the scene; ``core_in_read`` locates the core inside
    the read window.
    """

    index: int
    row: int
    col: int
    height: int
    width: int
    halo: int

    @property
    def read_row(self) -> int:
        return self.row - self.halo

    @property
    def read_col(self) -> int:
        return self.col - self.halo

    @property
    def read_height(self) -> int:
        return self.height + 2 * self.halo

    @property
    def read_width(self) -> int:
        return self.width + 2 * self.halo

    @property
    def core_in_read(self) -> tuple[slice, slice]:
        h = self.halo
        return slice(h, h + self.height), slice(h, h + self.width)

    @property
    def pixels(self) -> int:
        return self.height * self.width


def plan_tiles(height: int, width: int, tile: int, halo: int) -> list[TileSpec]:
    """Row-major tiles of ``tile`` x ``tile`` core pixels (smaller at the right/bottom edge)."""
    if tile < 1:
        raise ValueError("tile size must be positive")
    specs = []
    for r in range(0, height, tile):
        for c in range(0, width, tile):
            specs.append(
                TileSpec(len(specs), r, c, min(tile, height - r), min(tile, width - c), halo)
            )
    return specs
