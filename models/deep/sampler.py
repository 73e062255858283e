"""Random training windows, read and degraded one window at a time.

Whole-scene training (:func:`models.deep.data.prepare_scene`) holds every degraded
scene in memory: a 6000^2 PAN at ratio 4 cost gigabytes. Here a window is drawn
first (:func:`tiling.windows.random_windows`: origins on the degraded grid, inside the
training area), then only that window plus the halo the degradation needs is read from
the PAN and MS (:mod:`models.deep.readers`) and degraded by the same functions the
whole-scene path uses (:func:`models.deep.data.degrade_ms_block`,
:func:`~models.deep.data.degrade_pan_block`). Memory is set by the batch and the
patch, not the scene.

Why the patch equals the whole-scene one. On the degraded grid (= original MS pixels,
index k), a window [y, y + p) needs

- the target: MS rows [y, y + p);
- PAN_LR = imresize(PAN, 1/r): PAN rows within 2.5 r + 1 of the window's PAN rows
  (bicubic widened by r), i.e. 3 degraded pixels;
- ms_up = EXP(decimate(MTF(MS))): the 23-tap EXP reads MS_LR samples within 12 of
  (k - r/2)/r, each the MTF (41 taps, 20 each side) of MS pixel r j + r/2: MS rows
  [y - 12 r - 20, y + p + 12 r + 20).

So the MS is read with a halo of ``MTF_HALF + 13 r`` (one more r for the EXP's
phase), its start and end rounded out to multiples of r so that the block's
decimation phase (r j + r/2) and MS_LR grid are the scene's; the PAN with a halo of
:data:`~models.deep.data.PAN_REACH` = 3 degraded pixels (3 r PAN pixels: the MS halo
would read ~10x more PAN for nothing). Both are clipped to the scene: where a block
stops at the scene's border, its border *is* the scene's and the replicated (MTF) and
symmetric (imresize, EXP) borders reflect the same pixels; elsewhere the halo covers
every tap. The only difference left is rounding:
the FFT filter and the matrix products sum the same non-zero terms over blocks of
another size, ~1e-16 relative before the float32 cast, i.e. at most one float32 unit.

Nodata: a patch is refused when an invalid MS pixel lies within
:func:`models.deep.data.nodata_reach` of it or an invalid PAN block within
``PAN_REACH``, exactly the whole-scene rule (checked on the raw reads, before any
filtering); a refused
draw is replaced by the next one (rejection keeps every valid position equally
likely). Validation does not draw patches: the held-out areas are fused whole (in
capped crops) through the executor ``pansharp fuse`` uses (:mod:`models.deep.validation`).

Train/validation split (:func:`split_windows`): whole scenes are held out when there
are two or more (:func:`models.deep.data.split_scenes`, seeded); a single scene keeps
a band of rows for validation (top or bottom, chosen by the seed), separated from the
training rows by the read halo (and a ratio) so no training read touches a validation
pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from errors import OptionError
from models.deep.data import (
    PAN_REACH,
    Patch,
    degrade_ms_block,
    degrade_pan_block,
    ms_invalid,
    nodata_reach,
    pan_invalid,
    prepare_scene,
    split_scenes,
    wald_grid,
)
from models.deep.readers import ArrayPair, PairReader
from physics.mtf import MTF_HALF
from tiling.windows import Box, box_positions, hold_out_rows, random_windows

#: Patches stacked for a step: ms_up (N, B, p, p), pan (N, 1, p, p), target (N, B, p, p).
Patches = tuple[np.ndarray, np.ndarray, np.ndarray]

REJECTS_PER_PATCH = 50  # refused draws (nodata) allowed per patch of a batch


def read_halo(ratio: int) -> int:
    """Degraded-grid pixels read around a window so its patch equals the whole scene's."""
    return MTF_HALF + 13 * ratio


class PatchSource(Protocol):
    """A scene the sampler draws from: whole in memory, or streamed from its files."""

    name: str

    @property
    def shape(self) -> tuple[int, int]:
        """The degraded grid (h, w)."""
        ...

    @property
    def n_bands(self) -> int: ...

    def patch(self, y: int, x: int, patch: int) -> Patch | None:
        """The patch at (y, x), or None where it touches nodata."""
        ...


class StreamingScene:
    """One pair degraded window by window from a :class:`~models.deep.readers.PairReader`."""

    def __init__(
        self,
        reader: PairReader,
        gains: Sequence[float],
        ratio: int,
        scale: float,
        nodata: float | None = None,
        name: str | None = None,
    ) -> None:
        self.reader = reader
        self.name = name if name is not None else reader.name
        self.gains = list(gains)
        self.ratio = ratio
        self.scale = scale
        self.nodata = nodata
        self._shape = wald_grid(reader.pan_shape, reader.ms_shape, ratio, self.name)

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def n_bands(self) -> int:
        return self.reader.n_bands

    def read_box(self, y: int, x: int, patch: int) -> Box:
        """The MS block read for the window at (y, x): halo added, rounded out to
        multiples of the ratio, clipped to the degraded grid (module docstring)."""
        r, halo = self.ratio, read_halo(self.ratio)
        h, w = self._shape
        r0 = max(0, (y - halo) // r * r)
        c0 = max(0, (x - halo) // r * r)
        r1 = min(h, -(-(y + patch + halo) // r) * r)
        c1 = min(w, -(-(x + patch + halo) // r) * r)
        return r0, r1, c0, c1

    def pan_box(self, y: int, x: int, patch: int) -> Box:
        """The PAN blocks read for the window (degraded-grid units): PAN_REACH around it."""
        h, w = self._shape
        return (
            max(0, y - PAN_REACH),
            min(h, y + patch + PAN_REACH),
            max(0, x - PAN_REACH),
            min(w, x + patch + PAN_REACH),
        )

    def patch(self, y: int, x: int, patch: int) -> Patch | None:
        r = self.ratio
        r0, r1, c0, c1 = self.read_box(y, x, patch)
        ms = self.reader.read_ms(r0, r1, c0, c1)
        g, ly, lx = nodata_reach(r), y - r0, x - c0
        if ms_invalid(ms, self.nodata)[
            max(0, ly - g) : ly + patch + g, max(0, lx - g) : lx + patch + g
        ].any():
            return None
        p0, p1, q0, q1 = self.pan_box(y, x, patch)
        pan = self.reader.read_pan(p0 * r, p1 * r, q0 * r, q1 * r)
        if pan_invalid(pan, r, self.nodata).any():  # the block is the window + PAN_REACH
            return None
        ms_up, target = degrade_ms_block(ms, self.gains, r, self.scale)
        pan_lr = degrade_pan_block(pan, r, self.scale)
        rows, cols = slice(ly, ly + patch), slice(lx, lx + patch)
        prow, pcol = slice(y - p0, y - p0 + patch), slice(x - q0, x - q0 + patch)
        return ms_up[:, rows, cols], pan_lr[None, prow, pcol], target[:, rows, cols]


def open_sources(
    pairs: Sequence[Any],
    gains_for: Callable[[int], Sequence[float]],
    ratio: int,
    scale: float,
    names: Sequence[str] | None = None,
    nodata: float | None = None,
) -> list[PatchSource]:
    """One source per pair: (PAN, MS) arrays are degraded whole (in memory, fastest when
    the arrays are there anyway); a :class:`PairReader` streams. All need one band count."""
    if len(pairs) == 0:
        raise OptionError("no training pairs given")
    if names is not None and len(names) != len(pairs):
        raise OptionError(f"{len(names)} scene names for {len(pairs)} pairs")
    sources: list[PatchSource] = []
    n_bands: int | None = None
    for i, item in enumerate(pairs):
        if isinstance(item, tuple):
            name = names[i] if names is not None else f"pair{i:03d}"
            reader: PairReader = ArrayPair(item[0], item[1], name)
        else:  # a reader knows its name; ``names`` still wins (the caller's card names)
            reader, name = item, names[i] if names is not None else item.name
        if n_bands is None:
            n_bands = reader.n_bands
        elif reader.n_bands != n_bands:
            raise OptionError(
                f"training pair {i} has {reader.n_bands} MS bands, the first has {n_bands}: "
                f"every training scene needs the same bands"
            )
        gains = gains_for(n_bands)
        if isinstance(reader, ArrayPair):
            sources.append(prepare_scene(reader.pan, reader.ms, gains, ratio, scale, name, nodata))
        else:
            sources.append(StreamingScene(reader, gains, ratio, scale, nodata, name))
    return sources


@dataclass
class Split:
    """Where training and validation windows may lie: (source index, box) areas."""

    train: list[tuple[int, Box]]
    val: list[tuple[int, Box]]
    train_names: list[str]
    val_names: list[str]  # whole scenes held out
    val_rows: dict[str, Any] | None = None  # the held-out band of a single scene
    notes: list[str] = field(default_factory=list)


def split_windows(
    sources: Sequence[PatchSource], val_fraction: float, seed: int, patch: int, ratio: int
) -> Split:
    """Hold out whole scenes (two or more scenes) or a band of rows (one scene), seeded.

    Deterministic in ``seed``: the scene order is :func:`split_scenes`'s permutation; a
    single scene's band is at the bottom or the top by the next draw of that generator.
    """
    idx = list(range(len(sources)))
    tr, va = split_scenes(idx, val_fraction, seed)
    if len(sources) == 1 and val_fraction > 0:
        rng = np.random.default_rng(seed)
        rng.permutation(1)  # the draw split_scenes made, so the next one is independent
        bottom = bool(rng.integers(2))
        # gap: the read halo, plus the rounding of a read block out to the ratio
        gap = read_halo(ratio) + ratio
        cut = hold_out_rows(sources[0].shape, val_fraction, patch, gap, bottom)
        if cut is not None:
            boxes, band = cut
            return Split(
                train=[(0, b) for b in boxes],
                val=[(0, band)],
                train_names=[sources[0].name],
                val_names=[],
                val_rows={"scene": sources[0].name, "rows": [band[0], band[1]]},
            )
    whole = [(i, (0, sources[i].shape[0], 0, sources[i].shape[1])) for i in tr]
    val = [(i, (0, sources[i].shape[0], 0, sources[i].shape[1])) for i in va]
    return Split(
        train=whole,
        val=val,
        train_names=[sources[i].name for i in tr],
        val_names=[sources[i].name for i in va],
    )


def area_positions(areas: Sequence[tuple[int, Box]], patch: int) -> int:
    """Number of window positions in ``areas`` (the epoch's size, in patches)."""
    return sum(int(np.prod(box_positions(b, patch))) for _, b in areas)


class WindowSampler:
    """Batches of random valid patches from the training areas, driven by one Generator.

    The generator is the only state: saving ``rng.bit_generator.state`` after a step and
    restoring it continues the same sequence of windows (resume).
    """

    def __init__(
        self,
        sources: Sequence[PatchSource],
        areas: Sequence[tuple[int, Box]],
        patch: int,
        rng: np.random.Generator,
    ) -> None:
        self.sources = list(sources)
        self.areas = list(areas)
        self.boxes = [b for _, b in areas]
        self.patch = patch
        self.rng = rng
        #: (lattice, phase): origins moved onto ``phase + lattice * k`` (degraded grid)
        #: for ratio-aligned networks, whose patches start on an MS_LR sample (the
        #: toolbox decimation keeps r k + r/2); (1, 0) leaves them where drawn.
        self.align: tuple[int, int] = (1, 0)
        #: source index of each patch of the last batch (equalisation by its own scene)
        self.drawn = np.zeros(0, dtype=np.int64)

    def windows(self, n: int) -> np.ndarray:
        """(n, 3) rows (source index, row, col) drawn from the areas."""
        got = random_windows(self.rng, self.boxes, self.patch, n)
        lattice, phase = self.align
        if lattice > 1:
            got = np.stack(
                [got[:, 0], *(self._aligned(got[:, 0], got[:, k], k) for k in (1, 2))], axis=1
            )
        src = np.array([i for i, _ in self.areas], dtype=np.int64)
        return np.stack([src[got[:, 0]], got[:, 1], got[:, 2]], axis=1)

    def _aligned(self, area: np.ndarray, pos: np.ndarray, axis: int) -> np.ndarray:
        """``pos`` moved down onto the lattice, or up where that leaves the area's box
        (an area narrower than patch + lattice keeps its only position)."""
        lattice, phase = self.align
        lo = np.array([self.boxes[a][2 * (axis - 1)] for a in area.tolist()], dtype=np.int64)
        hi = np.array([self.boxes[a][2 * (axis - 1) + 1] for a in area.tolist()], dtype=np.int64)
        down = pos - (pos - phase) % lattice
        up = down + lattice
        return np.where(down >= lo, down, np.where(up + self.patch <= hi, up, pos))

    def batch(self, n: int) -> Patches:
        """``n`` patches; windows touching nodata are replaced by further draws."""
        found: list[Patch] = []
        drawn: list[int] = []
        rejected = 0
        while len(found) < n:
            for s, y, x in self.windows(n - len(found)).tolist():
                got = self.sources[s].patch(y, x, self.patch)
                if got is None:
                    rejected += 1
                else:
                    found.append(got)
                    drawn.append(s)
            if rejected > REJECTS_PER_PATCH * n:
                raise OptionError(
                    f"--patch {self.patch}: {rejected} random windows touched nodata for a "
                    f"batch of {n}; the training scenes hold too little valid data for this "
                    f"patch size: use a smaller --patch (or check --nodata)"
                )
        self.drawn = np.array(drawn, dtype=np.int64)
        return stack(found)


def stack(patches: Sequence[Patch]) -> Patches:
    """Stack patches into the (N, ...) arrays of a step."""
    return (
        np.stack([p[0] for p in patches]),
        np.stack([p[1] for p in patches]),
        np.stack([p[2] for p in patches]),
    )
