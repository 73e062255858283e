"""Tile planning for blended methods: equal-sized overlapping patches and their blend windows.

Why patches and not the classical tiles: a network runs best on a few large, equal-sized
inputs stacked into one batch, and its receptive field (the prepared method's ``halo``)
decides how much two neighbouring patches must share. Each patch gets a weight window
that is

* zero in an outer ``margin`` (= the halo when the overlap allows): those pixels see
  the patch border, not the scene, so they are computed and dropped - every pixel that
  is kept equals the whole-image result;
* a cosine (Hann) ramp of ``ramp`` pixels where it meets its neighbour: the two ramps
  are complementary (sin^2 + cos^2 = 1), so where a model is not strictly local (LAGNet's
  global bias) or the user chose a smaller ``--overlap`` the patches fade into each
  other instead of leaving a seam;
* one elsewhere, and one up to the scene's own border (no neighbour to blend with).

The blender (:mod:`tiling.blended`) accumulates ``sum(w * out)`` and ``sum(w)`` and
divides, so any overlap (including the last patch of a row or column, shifted back to
end at the scene border) is blended correctly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from errors import OptionError
from tiling.windows import TileSpec

MIN_PATCH = 256
# Largest default patch (GPU, or CPU models too wide for cpu_patch_cap). On the CPU, once
# freed activations stay in the heap (keep_freed_memory), patches whose maps fit under
# glibc's mmap ceiling are faster: FusionNet 1.19 Mpx/s at 496^2 vs 0.85 at 1024^2.
MAX_PATCH = 1024
PATCH_PER_OVERLAP = 64  # patch >= 64 x overlap keeps the recomputed overlap under ~3 %
# One batch on the CPU (--batch-size auto): large patches go one at a time, which measured
# faster than stacking them (FusionNet 1024^2: 0.41 Mpx/s alone, 0.31 two at a time).
CPU_BUDGET_BYTES = 512 << 20
CUDA_FREE_FRACTION = 0.5  # share of the free device memory one batch may take
MAX_AUTO_BATCH = 64


# -- the patch plan --------------------------------------------------------------------
LOCAL_RAMP = 4  # local model, margin = halo: patches agree, a short ramp only smooths noise
GLOBAL_RAMP = 32  # global-context model (LAGNet's bias): patches disagree slightly


def default_ramp(halo: int, global_context: bool = False) -> int:
    """Blend width when the user gives no ``--overlap``.

    A local network tiled with a margin of its halo gives the same value in both patches,
    so the ramp only has to absorb float rounding; a network with global context (pooled
    statistics) gives slightly different values per patch, faded over a wider ramp.
    """
    return max(GLOBAL_RAMP, 2 * halo) if global_context else LOCAL_RAMP


def default_overlap(halo: int, global_context: bool = False) -> int:
    """``--overlap`` when the user gives none: the halo on both sides plus the ramp."""
    return 2 * halo + default_ramp(halo, global_context)


def split_overlap(overlap: int, halo: int) -> tuple[int, int]:
    """(margin, ramp) of a patch window for ``overlap`` shared pixels.

    With ``overlap >= 2 * halo + 1`` the margin is the whole halo (exact tiling) and the
    rest is the ramp. A smaller overlap cannot be exact, so it is split evenly: a quarter
    of it dropped on each side, half of it blended.
    """
    if overlap < 0:
        raise OptionError(f"--overlap must be >= 0, got {overlap}")
    if overlap >= 2 * halo + 1:
        return halo, overlap - 2 * halo
    margin = overlap // 4
    return margin, overlap - 2 * margin


def default_patch(overlap: int) -> int:
    """Patch side for an overlap: large enough that the overlap costs little, in 128 steps."""
    want = PATCH_PER_OVERLAP * max(overlap, 1)
    return int(min(MAX_PATCH, max(MIN_PATCH, math.ceil(want / 128) * 128)))


@dataclass(frozen=True)
class AxisPlan:
    """Patches along one axis: read-window starts (may be < 0) and one shared length.

    ``leads``: where each patch's core starts in its read window (None: at ``margin``);
    ratio-aligned plans (:func:`align_axis`) move each read window back to the MS
    sample lattice, so their leads differ and their windows are a little longer.
    """

    length: int  # scene pixels on this axis
    patch: int  # read-window length of every patch on this axis
    margin: int
    ramp: int
    starts: tuple[int, ...]
    leads: tuple[int, ...] | None = None
    core_len: int | None = None  # None: patch - 2 * margin

    @property
    def core(self) -> int:
        """Pixels of a patch with non-zero weight."""
        return self.core_len if self.core_len is not None else self.patch - 2 * self.margin

    def lead(self, i: int) -> int:
        """Offset of patch ``i``'s core in its read window (at least ``margin``)."""
        return self.leads[i] if self.leads is not None else self.margin

    def core_start(self, i: int) -> int:
        return self.starts[i] + self.lead(i)

    def span(self, i: int) -> tuple[int, int]:
        """``(first, end)`` of patch ``i``'s core in its read window: its pixels with a
        non-zero weight."""
        return self.lead(i), self.lead(i) + self.core

    def weights(self, i: int) -> np.ndarray:
        """1-D window of patch ``i``: 0 in the margin, cosine ramps towards neighbours."""
        w = np.zeros(self.patch, dtype=np.float32)
        m, c = self.lead(i), self.core
        w[m : m + c] = 1.0
        r = min(self.ramp, c)
        if r > 0:
            t = (np.arange(r, dtype=np.float64) + 0.5) / r
            up = (np.sin(0.5 * np.pi * t) ** 2).astype(np.float32)
            if i > 0:
                w[m : m + r] = up
            if i < len(self.starts) - 1:
                w[m + c - r : m + c] = up[::-1]
        return w


STRETCH = 1.15  # a patch may grow this much if it saves a whole row/column of patches


def plan_axis(
    length: int, patch: int, margin: int, ramp: int, stretch: float = STRETCH
) -> AxisPlan:
    """Cover ``length`` pixels with as few patches as fit, all of one size, evenly spread.

    Why balanced: with a fixed size the last patch is mostly wasted (4000 pixels with
    1024-pixel patches and a 30-pixel overlap need 5 patches, 28 % more computation
    than the scene); here the count is the smallest that covers ``length`` with patches
    at most ``STRETCH`` x ``patch``, and the cores shrink to share the length evenly
    (4 patches of 1028). Consecutive cores overlap by at least ``ramp``; the last core
    ends exactly at the scene border, no patch reaches past it further than its margin.
    """
    core_max = patch - 2 * margin
    if core_max <= ramp:
        raise OptionError(
            f"--tile {patch} is too small for an overlap of {2 * margin + ramp} pixels; "
            f"use a --tile larger than {2 * (2 * margin + ramp)} or a smaller --overlap"
        )
    if length <= int(core_max * stretch):
        return AxisPlan(length, length + 2 * margin, margin, ramp, (-margin,))
    stretched = max(core_max, int(core_max * stretch))
    n = max(2, math.ceil((length - ramp) / (stretched - ramp)))
    core = math.ceil((length + (n - 1) * ramp) / n)
    starts = [k * (core - ramp) for k in range(n - 1)] + [length - core]
    return AxisPlan(length, core + 2 * margin, margin, ramp, tuple(s - margin for s in starts))


@dataclass(frozen=True)
class PatchPlan:
    """The whole scene's patches: row and column plans (row-major order)."""

    rows: AxisPlan
    cols: AxisPlan
    halo: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.patch, self.cols.patch

    @property
    def count(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)

    @property
    def exact(self) -> bool:
        """True when every kept pixel sees its whole receptive field (tiled == whole)."""
        return self.rows.margin >= self.halo and self.cols.margin >= self.halo

    def spec(self, i: int, j: int) -> TileSpec:
        """Reader window of patch (i, j): ``patch`` pixels from its read start (its core
        plus the margin on every side, and the alignment's extra pixels if any)."""
        r, c = self.rows, self.cols
        m = min(r.margin, c.margin)
        return TileSpec(
            index=i * len(c.starts) + j,
            row=r.starts[i] + m,
            col=c.starts[j] + m,
            height=r.patch - 2 * m,
            width=c.patch - 2 * m,
            halo=m,
        )

    def window(self, i: int, j: int) -> np.ndarray:
        return np.outer(self.rows.weights(i), self.cols.weights(j))


def cpu_patch_cap(map_bytes_per_pixel: int, overlap: int) -> int | None:
    """Largest patch side (a multiple of 16) whose largest activation
    (``map_bytes_per_pixel``, :attr:`models.protocol.MethodSpec.map_bytes_per_pixel`)
    stays under glibc's mmap ceiling, or None when that patch would be too small for the
    overlap.

    With :func:`tiling.allocator.keep_freed_memory`, activations under the ceiling are
    reused from the heap patch after patch instead of being faulted in and zeroed anew;
    the smaller patches recompute more overlap, so the cap applies only when the patch
    is at least 16 x the overlap (under ~13 % recomputed pixels). FusionNet/PanNet: 496,
    PNN/DiCNN (64 maps): 352; LAGNet (288 tap maps per LAGConv): none.
    """
    from tiling.allocator import GLIBC_MMAP_CEILING

    px = (GLIBC_MMAP_CEILING - (64 << 10)) // max(1, int(map_bytes_per_pixel))
    side = int(math.isqrt(px)) // 16 * 16
    return side if side >= max(MIN_PATCH, 16 * overlap) else None


def plan_patches(
    height: int,
    width: int,
    halo: int,
    tile: int | None = None,
    overlap: int | None = None,
    global_context: bool = False,
    max_patch: int | None = None,
    align: int = 1,
    phase: tuple[int, int] = (0, 0),
) -> PatchPlan:
    """Patch plan for a scene; ``tile``/``overlap`` default from the receptive field
    (``max_patch`` caps that default, see :func:`cpu_patch_cap`); ``align > 1``: read
    windows on the MS sample lattice whose first sample is at scene pixel ``phase``
    (rows, cols), see :func:`align_axis`."""
    if overlap is None:
        overlap = default_overlap(halo, global_context)
    margin, ramp = split_overlap(int(overlap), halo)
    patch = int(tile) if tile is not None else default_patch(2 * margin + ramp)
    stretch = STRETCH
    if tile is None and max_patch is not None:
        patch, stretch = min(patch, int(max_patch)), 1.0  # a hard cap: no stretching past it
    if patch < 8:
        raise OptionError(f"--tile must be >= 8 for deep models, got {patch}")
    if overlap > patch // 2:
        raise OptionError(
            f"--overlap {overlap} is more than half of --tile {patch}; use a larger --tile"
        )
    rows = plan_axis(height, patch, margin, ramp, stretch)
    cols = plan_axis(width, patch, margin, ramp, stretch)
    if align > 1:
        rows, cols = align_axis(rows, align, phase[0]), align_axis(cols, align, phase[1])
    return PatchPlan(rows, cols, halo)


def align_axis(plan: AxisPlan, ratio: int, phase: int) -> AxisPlan:
    """Move every read window back to start on the MS sample lattice (scene pixels
    ``phase + ratio * n``) and give all one length, a multiple of ``ratio``.

    Why: a method that works on the MS samples (a decimation operator D in a data
    term, OTPNet's unfolded iterations) then sees, in every patch, samples at the
    patch-local pixels 0, ratio, 2 ratio ... and ``patch / ratio`` of them, so patches
    stack into one batch and every patch decimates where the scene does. The cores and
    their blending do not move: each core starts ``lead`` pixels into its longer window
    (at least the margin, less than margin + ratio), so the kept pixels and their
    weights are those of the unaligned plan.
    """
    core = plan.core
    length = -(-(core + 2 * plan.margin + ratio - 1) // ratio) * ratio
    starts, leads = [], []
    for i in range(len(plan.starts)):
        cs = plan.core_start(i)
        s = (cs - plan.margin - phase) // ratio * ratio + phase
        starts.append(s)
        leads.append(cs - s)
    return AxisPlan(plan.length, length, plan.margin, plan.ramp, tuple(starts), tuple(leads), core)


def batch_for_memory(bytes_per_pixel: int, device: Any, shape: tuple[int, int]) -> int:
    """``--batch-size auto``: patches of ``shape`` whose working memory
    (``bytes_per_pixel`` each pixel) fits the budget: a share of the free device memory
    on CUDA, a fixed budget on the CPU (large CPU patches go one at a time, which
    measured faster than stacking them)."""
    per = max(1, int(bytes_per_pixel) * shape[0] * shape[1])
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        budget = int(free * CUDA_FREE_FRACTION)
    else:
        budget = CPU_BUDGET_BYTES
    return int(max(1, min(MAX_AUTO_BATCH, budget // per)))
