"""Cutting a scene into tiles with a halo.

Why the halo: a method's output at a pixel depends on every input pixel within its
receptive field (the MTF filter's 20 pixels, the GLP chain's decimation and 23-tap
re-interpolation ...). A tile read with a halo at least that wide has, in its core,
exactly the values the whole-image computation would give; the halo is computed and
thrown away. Outside the scene, the halo holds edge-replicated PAN values, so an edge
tile sees exactly what the whole image (processed as one tile) sees.

Training draws windows instead of tiling (:func:`random_windows`, :func:`grid_windows`,
:func:`hold_out_rows`): window origins on a grid, inside boxes that say where training
(or validation) may read, so the split is geometry, decided before any pixel is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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


# -- random training windows -----------------------------------------------------------
#: A rectangle of a grid, half-open: (row0, row1, col0, col1).
Box = tuple[int, int, int, int]


def box_positions(box: Box, patch: int) -> tuple[int, int]:
    """(rows, cols) of the top-left corners of ``patch`` x ``patch`` windows inside ``box``."""
    r0, r1, c0, c1 = box
    return max(0, r1 - r0 - patch + 1), max(0, c1 - c0 - patch + 1)


def random_windows(
    rng: np.random.Generator, boxes: Sequence[Box], patch: int, n: int
) -> np.ndarray:
    """``n`` windows drawn uniformly among every window position inside ``boxes``.

    Returns (n, 3) int64 rows (box index, row, col), row/col the window's top-left corner
    on the boxes' grid; each window lies wholly inside its box. Every position of every
    box is equally likely (a box is chosen in proportion to its positions): one integer
    in [0, total positions) is drawn per window and decoded row-major, so the draw is
    exact integer arithmetic and depends on ``rng``'s state only.
    """
    dims = np.array([box_positions(b, patch) for b in boxes], dtype=np.int64).reshape(-1, 2)
    counts = dims[:, 0] * dims[:, 1]
    total = int(counts.sum())
    if total == 0:
        raise ValueError(f"no {patch} x {patch} window fits in any of {len(boxes)} boxes")
    flat = rng.integers(0, total, size=n, dtype=np.int64)
    ends = np.cumsum(counts)
    which = np.searchsorted(ends, flat, side="right")
    local = flat - (ends[which] - counts[which])
    origin = np.array(boxes, dtype=np.int64).reshape(-1, 4)[which]
    rows = origin[:, 0] + local // dims[which, 1]
    cols = origin[:, 2] + local % dims[which, 1]
    return np.stack([which, rows, cols], axis=1)


def grid_windows(boxes: Sequence[Box], patch: int) -> np.ndarray:
    """Non-overlapping ``patch`` windows of each box, row-major from its corner, box by box.

    (n, 3) int64 rows (box index, row, col): the deterministic validation grid.
    """
    out = [
        (i, r, c)
        for i, (r0, r1, c0, c1) in enumerate(boxes)
        for r in range(r0, r1 - patch + 1, patch)
        for c in range(c0, c1 - patch + 1, patch)
    ]
    return np.array(out, dtype=np.int64).reshape(-1, 3)


def hold_out_rows(
    shape: tuple[int, int], fraction: float, patch: int, gap: int, bottom: bool
) -> tuple[list[Box], Box] | None:
    """Split one grid into training boxes and a held-out band of whole rows.

    The band is ``max(patch, round(fraction * height))`` rows at the bottom (or top) of
    the grid; ``gap`` rows beside it belong to neither side, so nothing a training
    window reads (its halo included, when ``gap`` >= the halo) is a validation pixel.
    None when the grid is too small to keep a training window after the band and gap.
    """
    h, w = shape
    band = max(patch, int(round(fraction * h)))
    keep = h - band - gap
    if keep < patch or w < patch:
        return None
    if bottom:
        return [(0, keep, 0, w)], (h - band, h, 0, w)
    return [(band + gap, h, 0, w)], (0, band, 0, w)
