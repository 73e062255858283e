"""Quicklooks of an evaluation: small previews gathered from the tile stream, one PNG.

``pansharp evaluate --quicklook PNG`` (issue 3): RGB quicklooks of the reference and of
each method with their absolute-error maps at reduced resolution (quality.md A), and a
per-tile HQNR heat-map over the scene at full resolution (quality.md B). Previews are
block means on a grid of at most ``MAX_SIDE`` pixels a side, accumulated tile by tile,
so memory stays bounded whatever the scene size. Rendering uses matplotlib's Agg
backend (no display needed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quality.checks import BLOCK

MAX_SIDE = 400  # longest side of a preview, pixels


def rgb_bands(n_bands: int, band_names: Sequence[str] = ()) -> list[int]:
    """Indexes of the red, green and blue bands (by name when known), else a fallback.

    Four bands are taken as blue, green, red, NIR (QuickBird, GeoEye, Landsat 8 B2-B5),
    eight as WorldView's (coastal, blue, green, yellow, red, ...); one or two bands give
    a grey preview of the first.
    """
    names = [n.lower() for n in band_names]
    if len(names) >= n_bands and all(c in names[:n_bands] for c in ("red", "green", "blue")):
        return [names.index("red"), names.index("green"), names.index("blue")]
    if n_bands >= 8:
        return [4, 2, 1]
    if n_bands >= 3:
        return [2, 1, 0]
    return [0, 0, 0]


class BlockPreview:
    """Block means of a (C, rows, cols) image on a coarse grid, fed by tile cores."""

    def __init__(self, rows: int, cols: int, channels: int) -> None:
        self.step = max(1, math.ceil(max(rows, cols) / MAX_SIDE))
        self.rows, self.cols = rows, cols
        self.shape = (math.ceil(rows / self.step), math.ceil(cols / self.step))
        self.channels = channels
        n = self.shape[0] * self.shape[1]
        self._sum = np.zeros((channels, n))
        self._count = np.zeros(n)

    def add(self, img: np.ndarray, row0: int, col0: int) -> None:
        """Account for the (C, h, w) ``img`` whose top-left pixel is (row0, col0)."""
        c, h, w = img.shape
        rr = (np.arange(row0, row0 + h) // self.step)[:, None]
        cc = (np.arange(col0, col0 + w) // self.step)[None, :]
        idx = (rr * self.shape[1] + cc).ravel()
        n = self.shape[0] * self.shape[1]
        self._count += np.bincount(idx, minlength=n)
        for k in range(c):
            self._sum[k] += np.bincount(idx, weights=img[k].ravel(), minlength=n)

    def image(self) -> np.ndarray:
        """(C, h, w) block means (NaN where no pixel arrived)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            out = self._sum / self._count
        return out.reshape(self.channels, *self.shape)


@dataclass
class ReducedPreviews:
    """RGB previews of the reference and of each method, and each method's |F - GT| map."""

    rows: int
    cols: int
    bands: list[int]
    reference: BlockPreview | None = None
    methods: dict[str, tuple[BlockPreview, BlockPreview]] = field(default_factory=dict)

    def add(
        self, method: str, fused: np.ndarray, gt: np.ndarray, core: tuple[int, int, int, int]
    ) -> None:
        """Add the core (r0, r1, c0, c1) of full-band ``fused``/``gt`` arrays cut to it."""
        r0, _, c0, _ = core
        if self.reference is None:
            self.reference = BlockPreview(self.rows, self.cols, 3)
            self._ref_done: set[tuple[int, int]] = set()
        if (r0, c0) not in self._ref_done:
            self._ref_done.add((r0, c0))
            self.reference.add(gt[self.bands], r0, c0)
        if method not in self.methods:
            self.methods[method] = (
                BlockPreview(self.rows, self.cols, 3),
                BlockPreview(self.rows, self.cols, 1),
            )
        rgb, err = self.methods[method]
        rgb.add(fused[self.bands], r0, c0)
        err.add(np.mean(np.abs(fused - gt), axis=0)[None], r0, c0)


@dataclass
class TileScore:
    """One full-resolution tile: its core and its D_S partial sums."""

    core: tuple[int, int, int, int]
    d_s: float


class HqnrMap:
    """Per-tile HQNR of one method, from the :class:`quality.FullAccumulator` stream.

    HQNR = (1 - D_lambda_K)(1 - D_S) (quality.md B) restricted to a tile: D_S from the
    tile's own block sums (the accumulator's additive D_S sums before/after the tile),
    D_lambda_K from the mean of the Q2n block values of the tile's blocks once the
    scene is complete. It reads the accumulator's sums, so it needs no second pass.
    """

    def __init__(self) -> None:
        self.tiles: list[TileScore] = []
        self._before: list[Any] | None = None

    def before(self, acc: Any) -> None:
        """Snapshot of the accumulator's D_S sums before a tile is added."""
        ds = getattr(acc, "_ds", None)
        self._before = [np.array(ds[0]), np.array(ds[1]), ds[2]] if ds is not None else None

    def after(self, acc: Any, core: tuple[int, int, int, int]) -> None:
        """Record the tile's D_S from the change of the sums."""
        ds = getattr(acc, "_ds", None)
        if ds is None or self._before is None:
            return
        hi, lo, n = ds[0] - self._before[0], ds[1] - self._before[1], ds[2] - self._before[2]
        value = float(np.mean(np.abs(hi / n - lo / n))) if n else math.nan
        self.tiles.append(TileScore(core, value))

    def grid(self, acc: Any) -> tuple[np.ndarray, list[int], list[int]]:
        """(rows of tiles, cols of tiles) HQNR values and the tile edges (row, col)."""
        q2n = getattr(getattr(acc, "_q2n", None), "values", None)
        r_edges = sorted({t.core[0] for t in self.tiles} | {t.core[1] for t in self.tiles})
        c_edges = sorted({t.core[2] for t in self.tiles} | {t.core[3] for t in self.tiles})
        out = np.full((len(r_edges) - 1, len(c_edges) - 1), np.nan)
        for t in self.tiles:
            r0, r1, c0, c1 = t.core
            if q2n is None:
                continue
            blocks = q2n[r0 // BLOCK : -(-r1 // BLOCK), c0 // BLOCK : -(-c1 // BLOCK)]
            q = float(np.nanmean(blocks)) if np.isfinite(blocks).any() else math.nan
            out[r_edges.index(r0), c_edges.index(c0)] = q * (1.0 - t.d_s)
        return out, r_edges, c_edges


def _stretch(img: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(3, h, w) -> (h, w, 3) in [0, 1] with per-channel limits."""
    out = (img - lo[:, None, None]) / np.maximum(hi - lo, 1e-12)[:, None, None]
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0).transpose(1, 2, 0)


def render(
    path: str,
    title: str,
    reduced: ReducedPreviews | None,
    full: dict[str, np.ndarray] | None,
) -> None:
    """Write the PNG: reduced row pair (RGB, |error|) and/or a row of HQNR heat-maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    red_methods = list(reduced.methods) if reduced and reduced.reference is not None else []
    full_methods = list(full) if full else []
    ncols = max(1 + len(red_methods), len(full_methods), 1)
    nrows = (2 if red_methods else 0) + (1 if full_methods else 0)
    if nrows == 0:
        return
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.8 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    row = 0
    if red_methods and reduced is not None and reduced.reference is not None:
        ref = reduced.reference.image()
        flat = ref.reshape(3, -1)
        lo = np.nanpercentile(flat, 2, axis=1)
        hi = np.nanpercentile(flat, 98, axis=1)
        axes[0, 0].imshow(_stretch(ref, lo, hi))
        axes[0, 0].set_title("reference (GT)", fontsize=8)
        errs = [reduced.methods[m][1].image()[0] for m in red_methods]
        vmax = max(float(np.nanpercentile(e, 99)) for e in errs) or 1.0
        for k, m in enumerate(red_methods, start=1):
            axes[0, k].imshow(_stretch(reduced.methods[m][0].image(), lo, hi))
            axes[0, k].set_title(f"{m} (reduced)", fontsize=8)
            im = axes[1, k].imshow(errs[k - 1], cmap="magma", vmin=0.0, vmax=vmax)
            axes[1, k].set_title(f"|{m} - GT|, band mean", fontsize=8)
        fig.colorbar(im, ax=axes[1, 0], fraction=0.8, label="DN")
        row = 2
    if full and full_methods:
        vals = np.concatenate([v.ravel() for v in full.values()])
        vals = vals[np.isfinite(vals)]
        vmin, vmax = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
        for k, m in enumerate(full_methods):
            im = axes[row, k].imshow(
                full[m], cmap="viridis", vmin=vmin, vmax=max(vmax, vmin + 1e-6)
            )
            axes[row, k].set_title(f"{m}: HQNR per tile", fontsize=8)
        fig.colorbar(im, ax=list(axes[row, : len(full_methods)]), shrink=0.8, label="HQNR")
    fig.suptitle(title, fontsize=9)
    from raster.destination import staged_file

    try:  # written beside the destination, published when complete
        with staged_file(path, overwrite=True, flag="--quicklook") as tmp:
            fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".").lower() or "png")
    finally:
        plt.close(fig)
