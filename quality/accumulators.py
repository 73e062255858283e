"""Streaming accumulators: the two protocols on scenes fed as tiles, any order.

Each accumulator keeps only additive sums (a few per band or band pair) and the
per-block Q2n values, so memory is O(number of 32 x 32 blocks) whatever the scene size,
and ``result()`` gives the same numbers as ``reduced_resolution_indexes`` /
``full_resolution_indexes`` on the whole scene (to rounding of the final sums; the
per-window and per-block values themselves are bit-identical, see ``windows`` and
``q2n``).

Tile contract (coordinates are those of the whole scene, 0-based, half-open):

- ``add(..., row0, col0, core)``: the arrays cover scene rows [row0, row0 + h) and
  columns [col0, col0 + w); ``core = (r0, r1, c0, c1)`` is the window this call is
  responsible for. The cores of all calls must partition the evaluated area (each of
  its pixels in exactly one core; parts of a core outside that area are ignored, so a
  partition of the whole scene is fine); order does not matter. ``core=None`` means
  the whole array. Missing or doubled pixels make ``add``/``result`` raise.
- The arrays must cover the core plus a halo, clipped to the area the protocol
  evaluates. Extra context beyond that is allowed and ignored.

Reduced resolution (:class:`ReducedAccumulator`): the evaluated area is the border cut
[20, H-21) x [20, W-21); core pixels outside it are ignored. No alignment is required.
Halo: ``REDUCED_HALO_BEFORE`` = 1 row/column above/left (SCC's Sobel) and
``REDUCED_HALO_AFTER`` = 31 below/right (a 32 x 32 Q window and an 11 x 11 SSIM window
are counted in the core holding their top-left pixel), both clipped to the cut area.

Full resolution (:class:`FullAccumulator`): the evaluated area is the whole scene.
Cores must be aligned to the 32-pixel block grid of the PAN: r0 and c0 multiples of 32,
r1 and c1 multiples of 32 or equal to H and W. Halo: ``pan_lowpass_halo(ratio)``
rows/columns on every side (32 for ratio 2, 64 for ratio 4, 128 for ratio 8), clipped
to the scene; and row0, col0 must be multiples of ``ratio`` (PAN_lp's phase), which
holds automatically when the arrays are exactly core + halo.

:func:`tile_windows`, :func:`reduced_tiles` and :func:`full_tiles` build windows that
satisfy these contracts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from errors import QualityError
from physics.mtf import mtf_filter_bands
from quality.checks import (
    BLOCK,
    as_plane,
    check_bit_depth,
    check_finite,
    check_gains,
    check_min_size,
    check_pair,
    check_pow2_ratio,
    check_ratio,
)
from quality.ergas import ergas_finish, error_partial
from quality.full_resolution import (
    d_lambda_finish,
    d_lambda_partial,
    d_s_finish,
    d_s_partial,
    pan_lowpass,
    pan_lowpass_halo,
)
from quality.protocols import CUT_LEADING, cut_bounds, min_reduced_size
from quality.psnr import psnr_finish
from quality.q2n import Q2nGrid
from quality.sam import sam_finish, sam_partial
from quality.scc import scc_finish, scc_partial
from quality.ssim import SSIM_WINDOW, ssim_finish, ssim_partial
from quality.uiqi import q_avg_finish, q_avg_partial

REDUCED_HALO_BEFORE = 1
REDUCED_HALO_AFTER = max(BLOCK, SSIM_WINDOW) - 1

Window = tuple[int, int, int, int]


@dataclass(frozen=True)
class TileWindow:
    """One tile: ``core`` it is responsible for, ``array`` the extent to read (r0, r1, c0, c1)."""

    core: Window
    array: Window


def tile_windows(
    rows: int, cols: int, tile_rows: int, tile_cols: int, before: int, after: int
) -> list[TileWindow]:
    """Cores of ``tile_rows`` x ``tile_cols`` covering the scene, each with its halo.

    The array window is the core grown by ``before`` rows/columns above/left and
    ``after`` below/right, clipped to the scene.
    """
    out = []
    for r0 in range(0, rows, tile_rows):
        r1 = min(r0 + tile_rows, rows)
        for c0 in range(0, cols, tile_cols):
            c1 = min(c0 + tile_cols, cols)
            arr = (max(r0 - before, 0), min(r1 + after, rows), max(c0 - before, 0))
            out.append(TileWindow((r0, r1, c0, c1), (*arr, min(c1 + after, cols))))
    return out


def reduced_tiles(rows: int, cols: int, tile_rows: int, tile_cols: int) -> list[TileWindow]:
    """Tiles for :class:`ReducedAccumulator` (any tile size)."""
    return tile_windows(rows, cols, tile_rows, tile_cols, REDUCED_HALO_BEFORE, REDUCED_HALO_AFTER)


def full_tiles(
    rows: int, cols: int, tile_rows: int, tile_cols: int, ratio: int
) -> list[TileWindow]:
    """Tiles for :class:`FullAccumulator`; tile sizes must be multiples of 32."""
    if tile_rows % BLOCK or tile_cols % BLOCK or tile_rows <= 0 or tile_cols <= 0:
        raise QualityError(
            f"full-resolution tiles must be multiples of {BLOCK} pixels, got "
            f"{tile_rows}x{tile_cols}"
        )
    h = pan_lowpass_halo(ratio)
    return tile_windows(rows, cols, tile_rows, tile_cols, h, h)


def _check_core(
    core: Window | None, row0: int, col0: int, h: int, w: int, rows: int, cols: int
) -> Window:
    """The core window, checked to lie inside both the arrays and the scene."""
    if core is None:
        core = (row0, row0 + h, col0, col0 + w)
    r0, r1, c0, c1 = (int(v) for v in core)
    if not (0 <= r0 <= r1 <= rows and 0 <= c0 <= c1 <= cols):
        raise QualityError(
            f"core rows {r0}..{r1}, cols {c0}..{c1} is not a window of the {rows}x{cols} scene"
        )
    if r0 < row0 or r1 > row0 + h or c0 < col0 or c1 > col0 + w:
        raise QualityError(
            f"core rows {r0}..{r1}, cols {c0}..{c1} is not inside the arrays passed "
            f"(rows {row0}..{row0 + h}, cols {col0}..{col0 + w})"
        )
    return r0, r1, c0, c1


def _check_cover(need: Window, have: Window, halo: str, what: str) -> None:
    """The arrays must cover the core and its halo."""
    if have[0] > need[0] or have[1] < need[1] or have[2] > need[2] or have[3] < need[3]:
        raise QualityError(
            f"{what}: the arrays cover rows {have[0]}..{have[1]}, cols {have[2]}..{have[3]} "
            f"but this core needs rows {need[0]}..{need[1]}, cols {need[2]}..{need[3]} "
            f"({halo}); pass a larger halo (see quality.accumulators)"
        )


class ReducedAccumulator:
    """Reduced-resolution indexes (quality.md A) of a scene fed as tiles.

    ``shape`` = (B, H, W) of the whole GT/fused scene (before the border cut).
    ``result()`` equals ``reduced_resolution_indexes(fused, gt, ratio, bit_depth)``.
    """

    def __init__(self, shape: tuple[int, int, int], ratio: int, bit_depth: int) -> None:
        b, h, w = (int(v) for v in shape)
        self.bands, self.rows, self.cols = b, h, w
        self.ratio = check_ratio(ratio, "ERGAS")
        self.bit_depth = check_bit_depth(bit_depth)
        m = min_reduced_size()
        check_min_size(h, w, m, "reduced-resolution evaluation", "the border cut drops 41 lines")
        self.r_cut = cut_bounds(h)
        self.c_cut = cut_bounds(w)
        self.hc = self.r_cut[1] - self.r_cut[0]
        self.wc = self.c_cut[1] - self.c_cut[0]
        self._q2n = Q2nGrid(self.hc, self.wc, b)
        self._sq = np.zeros(b)
        self._gsum = np.zeros(b)
        self._pixels = 0
        self._sam = [0.0, 0]
        self._q = [np.zeros(b), 0]
        self._ssim = [np.zeros(b), 0]
        self._scc = np.zeros(3)

    def add(
        self,
        fused: np.ndarray,
        gt: np.ndarray,
        row0: int,
        col0: int,
        core: Window | None = None,
    ) -> None:
        """Account for the ``core`` window of (B, h, w) ``fused``/``gt`` at (row0, col0)."""
        f, g = check_pair(fused, gt, ("fused tile", "gt tile"))
        if f.shape[0] != self.bands:
            raise QualityError(f"tile has {f.shape[0]} bands, the scene {self.bands}")
        h, w = f.shape[1:]
        cr0, cr1, cc0, cc1 = _check_core(core, row0, col0, h, w, self.rows, self.cols)
        # everything below is in cut-area coordinates
        o = CUT_LEADING
        a0, a1 = max(cr0, o) - o, min(cr1, self.r_cut[1]) - o
        b0, b1 = max(cc0, o) - o, min(cc1, self.c_cut[1]) - o
        if a0 >= a1 or b0 >= b1:
            return
        hc, wc = self.hc, self.wc
        d0, e0 = row0 - o, col0 - o
        need = (
            max(a0 - REDUCED_HALO_BEFORE, 0),
            min(a1 + REDUCED_HALO_AFTER, hc),
            max(b0 - REDUCED_HALO_BEFORE, 0),
            min(b1 + REDUCED_HALO_AFTER, wc),
        )
        _check_cover(
            tuple(v + o for v in need),
            (row0, row0 + h, col0, col0 + w),
            f"{REDUCED_HALO_BEFORE} before, {REDUCED_HALO_AFTER} after, within the border cut",
            "reduced-resolution tile",
        )
        npix = (a1 - a0) * (b1 - b0)
        if self._pixels + npix > hc * wc:
            raise QualityError("reduced-resolution tiles overlap: more pixels than the scene")

        def sub(x: np.ndarray, r: tuple[int, int], c: tuple[int, int]) -> np.ndarray:
            return x[:, r[0] - d0 : r[1] - d0, c[0] - e0 : c[1] - e0]

        fc, gc = sub(f, (a0, a1), (b0, b1)), sub(g, (a0, a1), (b0, b1))
        self._q2n.add(fc, gc, a0, b0)
        self._pixels += npix
        sq, gsum, _ = error_partial(fc, gc)
        self._sq += sq
        self._gsum += gsum
        s, n = sam_partial(fc, gc)
        self._sam[0] += s
        self._sam[1] += n
        # sliding windows whose top-left pixel lies in the core
        for acc, size, fn in (
            (self._q, BLOCK, lambda x, y: q_avg_partial(x, y, BLOCK)),
            (self._ssim, SSIM_WINDOW, lambda x, y: ssim_partial(x, y, self.bit_depth)),
        ):
            rr, cc = (a0, min(a1 + size - 1, hc)), (b0, min(b1 + size - 1, wc))
            if rr[1] - rr[0] >= size and cc[1] - cc[0] >= size:
                sums, cnt = fn(sub(f, rr, cc), sub(g, rr, cc))
                acc[0] = acc[0] + sums
                acc[1] += cnt
        # SCC on R = the cut area less one pixel per side, zero padding outside R
        p0, p1, q0, q1 = max(a0, 1), min(a1, hc - 1), max(b0, 1), min(b1, wc - 1)
        if p0 < p1 and q0 < q1:
            rr, cc = (p0 - 1, p1 + 1), (q0 - 1, q1 + 1)
            keep = (p0 >= 2, p1 <= hc - 2, q0 >= 2, q1 <= wc - 2)
            self._scc += scc_partial(sub(f, rr, cc), sub(g, rr, cc), keep)

    @property
    def complete(self) -> bool:
        """True once every pixel of the cut area has been added."""
        return self._pixels == self.hc * self.wc

    def result(self) -> dict[str, float]:
        """The indexes; refuses to answer before the whole cut area has arrived."""
        total = self.hc * self.wc
        if self._pixels != total:
            raise QualityError(
                f"reduced-resolution evaluation received {self._pixels} of {total} pixels of "
                "the cut area; some tiles are missing"
            )
        n = total
        return {
            "q2n": self._q2n.result(),
            "q": q_avg_finish(self._q[0], self._q[1]),
            "sam": sam_finish(self._sam[0], self._sam[1]),
            "ergas": ergas_finish(self._sq, self._gsum, n, self.ratio),
            "scc": scc_finish(self._scc),
            "psnr": psnr_finish(self._sq, n, self.bit_depth),
            "ssim": ssim_finish(self._ssim[0], self._ssim[1]),
        }


class FullAccumulator:
    """Full-resolution indexes (quality.md B) of a scene fed as tiles.

    ``shape`` = (B, H, W) of the fused image on the PAN grid. ``result()`` equals
    ``full_resolution_indexes(fused, pan, ms, ms_exp, ratio, ms_gains)``.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        ratio: int,
        ms_gains: Sequence[float] | np.ndarray,
    ) -> None:
        b, h, w = (int(v) for v in shape)
        self.bands, self.rows, self.cols = b, h, w
        self.ratio = check_pow2_ratio(ratio, "full-resolution evaluation (D_S, QNR, HQNR)")
        check_min_size(h, w, BLOCK, "full-resolution indexes (one block)")
        if b < 2:
            raise QualityError(f"D_lambda compares band pairs and needs at least 2 bands, got {b}")
        if h % self.ratio or w % self.ratio:
            raise QualityError(
                f"D_S needs a PAN whose sides are multiples of the ratio {self.ratio}, got "
                f"{h}x{w}; crop the scene to whole MS pixels"
            )
        self.gains = check_gains(ms_gains, b)
        self.halo = pan_lowpass_halo(self.ratio)
        self._q2n = Q2nGrid(h, w, b)
        npairs = b * (b - 1) // 2
        self._dl = [np.zeros(npairs), np.zeros(npairs), 0]
        self._ds = [np.zeros(b), np.zeros(b), 0]
        self._pixels = 0

    def add(
        self,
        fused: np.ndarray,
        pan: np.ndarray,
        ms_exp: np.ndarray,
        row0: int,
        col0: int,
        core: Window | None = None,
    ) -> None:
        """Account for the ``core`` window of the tile at (row0, col0).

        ``fused`` and ``ms_exp`` are (B, h, w), ``pan`` is (h, w), all on the PAN grid.
        """
        f, e = check_pair(fused, ms_exp, ("fused tile", "ms_exp tile"))
        if f.shape[0] != self.bands:
            raise QualityError(f"tile has {f.shape[0]} bands, the scene {self.bands}")
        p = as_plane(pan, "pan tile")
        if p.shape != f.shape[1:]:
            raise QualityError(f"pan tile is {p.shape}, the fused tile {f.shape[1:]}")
        check_finite(p, "pan tile")
        h, w = f.shape[1:]
        r0, r1, c0, c1 = _check_core(core, row0, col0, h, w, self.rows, self.cols)
        if r0 >= r1 or c0 >= c1:
            return
        aligned = (
            r0 % BLOCK == 0
            and c0 % BLOCK == 0
            and (r1 % BLOCK == 0 or r1 == self.rows)
            and (c1 % BLOCK == 0 or c1 == self.cols)
        )
        if not aligned:
            raise QualityError(
                f"full-resolution core rows {r0}..{r1}, cols {c0}..{c1} is not aligned to the "
                f"{BLOCK}-pixel block grid (starts multiples of {BLOCK}, ends too or at the "
                "scene edge)"
            )
        if row0 % self.ratio or col0 % self.ratio:
            raise QualityError(
                f"full-resolution tile origin ({row0}, {col0}) must be a multiple of the ratio "
                f"{self.ratio} (phase of PAN_lp)"
            )
        hl = self.halo
        _check_cover(
            (max(r0 - hl, 0), min(r1 + hl, self.rows), max(c0 - hl, 0), min(c1 + hl, self.cols)),
            (row0, row0 + h, col0, col0 + w),
            f"{hl} on every side, within the scene",
            "full-resolution tile",
        )
        npix = (r1 - r0) * (c1 - c0)
        if self._pixels + npix > self.rows * self.cols:
            raise QualityError("full-resolution tiles overlap: more pixels than the scene")
        rs, cs = slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0)
        lp = pan_lowpass(p, self.ratio)[rs, cs]
        mtf = mtf_filter_bands(f, self.gains, self.ratio)[:, rs, cs]
        fc, ec, pc = f[:, rs, cs], e[:, rs, cs], p[rs, cs]
        self._q2n.add(mtf, ec, r0, c0)
        self._pixels += npix
        sf, se, n = d_lambda_partial(fc, ec)
        self._dl = [self._dl[0] + sf, self._dl[1] + se, self._dl[2] + n]
        hi, lo, n = d_s_partial(fc, pc, ec, lp)
        self._ds = [self._ds[0] + hi, self._ds[1] + lo, self._ds[2] + n]

    @property
    def complete(self) -> bool:
        """True once every pixel of the scene has been added."""
        return self._pixels == self.rows * self.cols

    def result(self) -> dict[str, float]:
        """The indexes; refuses to answer before the whole scene has arrived."""
        total = self.rows * self.cols
        if self._pixels != total:
            raise QualityError(
                f"full-resolution evaluation received {self._pixels} of {total} pixels; "
                "some tiles are missing"
            )
        dl = d_lambda_finish(*self._dl)
        ds = d_s_finish(*self._ds)
        dk = 1.0 - self._q2n.result()
        return {
            "d_lambda": dl,
            "d_s": ds,
            "qnr": (1.0 - dl) * (1.0 - ds),
            "d_lambda_k": dk,
            "hqnr": (1.0 - dk) * (1.0 - ds),
        }
