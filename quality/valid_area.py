"""Which pixels ``pansharp evaluate`` scores: a nodata border is left out, holes refused.

quality.md's indexes have no mask. Each one is a sum over whole 32 x 32 blocks, over
sliding 32 x 32 and 11 x 11 windows, or over images filtered with a 41 x 41 MTF
filter, a Sobel kernel or the 23-tap interpolator, so a nodata pixel inside the image
cannot be skipped without redefining them (and the numbers would no longer be the
ones papers report). What can be done exactly is what a user would do by hand: crop
the scene to the rectangle that holds data (``gdal_translate -srcwin``) and evaluate
that sub-scene with the protocol unchanged. This module finds that rectangle:

- a pixel of the scanned grid is *valid* when it is valid in every layer (PAN, MS at
  PAN scale, fused image, reference): not the declared nodata value, not NaN or
  infinite, not masked by a GDAL mask band (per-dataset mask or alpha), in every band;
- a fused file that declares no nodata (the Orfeo ToolBox writes 0 around its outputs
  without saying so) has its *all-zero pixels* (every band exactly 0) treated as
  nodata where they lie outside the bounding box of the other valid pixels, i.e. as a
  border; inside that box they are scored as the data the tool produced (a dark pixel
  is data) and counted, so the report can say so;
- the valid area is the bounding box of the valid pixels; every pixel inside it must
  be valid, otherwise :class:`errors.QualityError` lists the files with holes.

The scan reads each file once in strips of about 2 Mpx (memory bounded whatever the
scene size); a layer that cannot hold invalid pixels (integer, no nodata, no mask, no
all-zero rule) is not read. A second pass over the box runs only when the box is not
entirely valid (to count holes per file, or all-zero pixels scored as data).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from errors import GeometryError, QualityError, RasterFormatError
from quality.eval_io import strips


@dataclass(frozen=True)
class Area:
    """A half-open window [row0, row1) x [col0, col1) of the scanned grid."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def rows(self) -> int:
        return self.row1 - self.row0

    @property
    def cols(self) -> int:
        return self.col1 - self.col0

    @property
    def pixels(self) -> int:
        return max(self.rows, 0) * max(self.cols, 0)

    def snapped(self, ratio: int) -> Area:
        """The largest sub-window made of whole MS pixels: starts moved up to multiples of
        ``ratio`` (the grid's origin is an MS pixel corner), sizes cut to multiples.

        The full-resolution protocol needs it: EXP puts MS pixel j on pixel
        ratio*j + ratio/2 of the array (quality.md), and D_S needs sides that are
        multiples of the ratio; a crop that starts mid-pixel would shift that phase.
        """
        r0 = ratio * -(-self.row0 // ratio)
        c0 = ratio * -(-self.col0 // ratio)
        rows = max(self.row1 - r0, 0) // ratio * ratio
        cols = max(self.col1 - c0, 0) // ratio * ratio
        return Area(r0, r0 + rows, c0, c0 + cols)

    def shifted(self, drow: int, dcol: int) -> Area:
        """This window in coordinates where this grid's pixel (0, 0) is (drow, dcol)."""
        return Area(self.row0 + drow, self.row1 + drow, self.col0 + dcol, self.col1 + dcol)

    def describe(self) -> str:
        return f"rows {self.row0}..{self.row1}, cols {self.col0}..{self.col1}"


# layer.read(row0, row1) -> (valid, all_zero or None), both (row1 - row0, cols) bool
Reader = Callable[[int, int], tuple[np.ndarray, np.ndarray | None]]


@dataclass
class Layer:
    """One input's validity on the scanned grid.

    ``role`` and ``path`` name it in messages; ``rule`` says in words what the file
    declares invalid (nodata value, NaN/inf, mask band, or "none"); ``read`` is None for
    a layer that cannot hold invalid pixels; ``zero_rule``: its all-zero pixels count
    as a nodata border.
    """

    role: str
    path: str
    rule: str
    read: Reader | None
    zero_rule: bool = False
    stack: ExitStack = field(default_factory=ExitStack)


def _masked(ds: Any, band: int) -> bool:
    return any(f.name in ("per_dataset", "alpha") for f in ds.mask_flag_enums[band - 1])


def _band_valid(ds: Any, data: np.ndarray, band: int, nodata: float | None, win: Window):
    """Validity of one band as the engine reads it (``tiling.reader._valid_mask``)."""
    if nodata is not None:
        valid = ~np.isnan(data) if np.isnan(nodata) else data != nodata
    else:
        valid = np.ones(data.shape, dtype=bool)
    if data.dtype.kind == "f":
        valid &= np.isfinite(data)
    if _masked(ds, band):
        valid &= ds.read_masks(band, window=win) > 0
    return valid


def _can_be_invalid(ds: Any, bands: Sequence[int], nodata: float | None) -> bool:
    floating = any(np.dtype(ds.dtypes[b - 1]).kind == "f" for b in bands)
    return nodata is not None or floating or any(_masked(ds, b) for b in bands)


def _rule(ds: Any, bands: Sequence[int], nodata: float | None) -> str:
    parts = []
    if nodata is not None:
        parts.append(f"nodata value {nodata:g}")
    if any(np.dtype(ds.dtypes[b - 1]).kind == "f" for b in bands):
        parts.append("NaN/inf")
    if any(_masked(ds, b) for b in bands):
        parts.append("GDAL mask band")
    return ", ".join(parts) or "none"


def file_layer(
    role: str,
    path: str,
    nodata: float | None,
    origin: tuple[int, int],
    cols: int,
    bands: Sequence[int] | None = None,
    zero_rule: bool = False,
) -> Layer:
    """A raster on the scanned grid: grid pixel (r, c) is file pixel (r, c) + ``origin``.

    ``zero_rule`` (the caller passes it for fused files only) also changes what the
    declared nodata value means: such a pixel is nodata when *every* band holds the
    value, as tools write it. A single band at that value is a dark pixel clipped to the
    bottom of the range (GSA on water: 51527 of 360000 pixels of a WorldView-2 tile
    have some band at 0, 2815 all of them), which is data. NaN/inf in any band, or a
    mask band, still make the pixel invalid. For the inputs (PAN, MS, reference) any
    band at the value makes the pixel invalid, as the engine's reader decides. The
    all-zero border rule itself applies when the file declares no nodata and has no
    mask band.
    """
    stack = ExitStack()
    ds = stack.enter_context(rasterio.open(path))
    idx = list(bands) if bands is not None else list(ds.indexes)
    whole_pixel = zero_rule
    zero_rule = zero_rule and nodata is None and not any(_masked(ds, b) for b in idx)
    rule = _rule(ds, idx, nodata)
    if whole_pixel and nodata is not None and len(idx) > 1:
        rule = rule.replace(f"nodata value {nodata:g}", f"nodata value {nodata:g} in all bands")
    if not zero_rule and not _can_be_invalid(ds, idx, nodata):
        stack.close()
        return Layer(role, path, rule, None)
    row_off, col_off = origin

    def read(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray | None]:
        win = Window(col_off, row_off + r0, cols, r1 - r0)
        data = ds.read(idx, window=win)
        valid = np.ones(data.shape[1:], dtype=bool)
        per_band = None if whole_pixel else nodata
        for plane, b in zip(data, idx, strict=True):
            valid &= _band_valid(ds, plane, b, per_band, win)
        if whole_pixel and nodata is not None:
            hit = np.isnan(data) if np.isnan(nodata) else data == nodata
            valid &= ~hit.all(axis=0)
        zero = (data == 0).all(axis=0) & valid if zero_rule else None
        return valid, zero

    return Layer(role, path, rule, read, zero_rule, stack)


def ms_layer(
    paths_bands: Sequence[tuple[str, int]],
    nodata: float | None,
    ms_shape: tuple[int, int],
    row_map: tuple[float, float],
    col_map: tuple[float, float],
    grid_origin: tuple[int, int],
    cols: int,
    warp: dict | None = None,
) -> Layer:
    """The MS's validity at PAN scale, as the engine's reader derives it.

    PAN pixel p (absolute index = grid index + ``grid_origin``) takes the validity of
    its nearest MS sample, j = ceil(a p + b - 0.5) (``row_map`` = (a, b); ties to the
    lower sample, like ``physics.kernels.nearest_kernel``), which is what
    ``tiling.reader.TileReader`` marks valid for EXP-resampled tiles.
    """
    stack = ExitStack()
    groups: dict[str, list[int]] = {}
    for path, band in paths_bands:
        groups.setdefault(path, []).append(band)
    handles: dict[str, Any] = {}
    for path in groups:
        ds = stack.enter_context(rasterio.open(path))
        if warp is not None:
            from rasterio.vrt import WarpedVRT

            ds = stack.enter_context(
                WarpedVRT(ds, resampling=rasterio.enums.Resampling.cubic, **warp)
            )
        handles[path] = ds
    first = next(iter(groups))
    rule = _rule(handles[first], groups[first], nodata)
    if not any(_can_be_invalid(handles[p], b, nodata) for p, b in groups.items()):
        stack.close()
        return Layer("MS", first, rule, None)
    mh, mw = ms_shape

    def nearest(amap: tuple[float, float], start: int, n: int, size: int) -> np.ndarray:
        u = amap[0] * np.arange(start, start + n, dtype=np.float64) + amap[1]
        return np.clip(np.ceil(u - 0.5), 0, size - 1).astype(np.int64)

    jc = nearest(col_map, grid_origin[1], cols, mw)
    c_lo, c_hi = int(jc.min()), int(jc.max()) + 1

    def read(r0: int, r1: int) -> tuple[np.ndarray, None]:
        jr = nearest(row_map, grid_origin[0] + r0, r1 - r0, mh)
        lo, hi = int(jr.min()), int(jr.max()) + 1
        win = Window(c_lo, lo, c_hi - c_lo, hi - lo)
        valid = np.ones((hi - lo, c_hi - c_lo), dtype=bool)
        for path, bands in groups.items():
            ds = handles[path]
            data = ds.read(bands, window=win)
            for plane, b in zip(data, bands, strict=True):
                valid &= _band_valid(ds, plane, b, nodata, win)
        return valid[np.ix_(jr - lo, jc - c_lo)], None

    return Layer("MS", first, rule, read, False, stack)


@dataclass
class ValidScan:
    """What the scan found on a ``shape`` grid.

    ``area``: the valid area (None when no pixel is valid in every layer);
    ``layer_valid``: valid pixels of each layer alone; ``zero_border``: all-zero pixels
    treated as nodata (outside the area); ``zero_inside``: all-zero pixels inside the
    area, scored as data; ``holes``: invalid pixels inside the area, per layer index.
    """

    shape: tuple[int, int]
    layers: list[Layer]
    area: Area | None
    layer_valid: list[int]
    zero_border: int
    zero_inside: int
    holes: dict[int, int]

    @property
    def left_out(self) -> int:
        """Pixels of the grid outside the valid area."""
        total = self.shape[0] * self.shape[1]
        return total - (self.area.pixels if self.area is not None else 0)

    def layer_invalid(self, i: int) -> int:
        return self.shape[0] * self.shape[1] - self.layer_valid[i]

    def check(self, what: str) -> Area:
        """The valid area, or the error that says which file leaves nothing or has holes.

        Every pixel nodata in one file: :class:`errors.RasterFormatError` (exit 3), the
        file cannot be used as given. Each file has data but not at the same place:
        :class:`errors.GeometryError` (exit 4). Holes inside the area:
        :class:`errors.QualityError` (exit 7), the indexes cannot be computed there.
        """
        total = self.shape[0] * self.shape[1]
        for i, layer in enumerate(self.layers):
            if self.layer_valid[i] == 0:
                raise RasterFormatError(
                    f"every pixel of the {layer.role} {layer.path} in {what} is nodata "
                    f"({layer.rule}); there is nothing to evaluate: check the file and its "
                    "nodata value"
                )
        if self.area is None:
            zero = [lay for lay in self.layers if lay.zero_rule]
            if zero and self.zero_border:
                lay = zero[0]
                raise RasterFormatError(
                    f"every pixel of the {lay.role} {lay.path} that has data in the inputs is "
                    "0 in all bands, and the file declares no nodata, so they count as nodata "
                    "(a nodata border); there is nothing to evaluate: check the file"
                )
            names = ", ".join(f"{lay.role} {lay.path}" for lay in self.layers)
            raise GeometryError(
                f"the pixels with data in {names} do not overlap anywhere in {what} "
                f"({total} pixels); check that the files cover the same area"
            )
        if self.holes:
            detail = "; ".join(
                f"{self.layers[i].role} {self.layers[i].path}: {n} px "
                f"({self.layers[i].rule if self.layers[i].rule != 'none' else 'inputs'})"
                for i, n in self.holes.items()
            )
            raise QualityError(
                f"the area of {what} that holds data ({self.area.describe()}) has nodata "
                f"pixels inside it ({detail}); pansharp leaves out a nodata border, but the "
                "protocol's indexes have no mask for holes (quality.md): fill them, or crop "
                "the scene to a window without them (e.g. gdal_translate -srcwin) before "
                "evaluating"
            )
        return self.area


def scan_valid(rows: int, cols: int, layers: list[Layer]) -> ValidScan:
    """Scan ``layers`` over a rows x cols grid; see the module docstring for the rules."""
    try:
        return _scan(rows, cols, layers)
    finally:
        for layer in layers:
            layer.stack.close()


def _scan(rows: int, cols: int, layers: list[Layer]) -> ValidScan:
    active = [(i, lay) for i, lay in enumerate(layers) if lay.read is not None]
    invalid = [0] * len(layers)
    if not active:
        full = [rows * cols] * len(layers)
        return ValidScan((rows, cols), layers, Area(0, rows, 0, cols), full, 0, 0, {})
    row_count = np.zeros(rows, dtype=np.int64)  # strictly valid pixels per row
    col_any = np.zeros(cols, dtype=bool)
    zero_total = 0
    for r0, r1 in strips(rows, cols):
        ok, zero = _strip(active, r0, r1, cols, invalid)
        strict = ok & ~zero
        row_count[r0:r1] = np.count_nonzero(strict, axis=1)
        col_any |= strict.any(axis=0)
        zero_total += int(np.count_nonzero(zero))
    layer_valid = [rows * cols - n for n in invalid]
    rows_any = np.flatnonzero(row_count)
    if rows_any.size == 0:
        return ValidScan((rows, cols), layers, None, layer_valid, zero_total, 0, {})
    cols_any = np.flatnonzero(col_any)
    area = Area(int(rows_any[0]), int(rows_any[-1]) + 1, int(cols_any[0]), int(cols_any[-1]) + 1)
    if int(row_count.sum()) == area.pixels:
        return ValidScan((rows, cols), layers, area, layer_valid, zero_total, 0, {})
    # second pass over the box: holes per layer, all-zero pixels scored as data
    holes = [0] * len(layers)
    zero_inside = 0
    c0, c1 = area.col0, area.col1
    for s0, s1 in strips(area.rows, cols):
        _, zero = _strip(active, area.row0 + s0, area.row0 + s1, cols, holes, (c0, c1))
        zero_inside += int(np.count_nonzero(zero[:, c0:c1]))
    found = {i: n for i, n in enumerate(holes) if n}
    return ValidScan(
        (rows, cols), layers, area, layer_valid, zero_total - zero_inside, zero_inside, found
    )


def _strip(
    active: list[tuple[int, Layer]],
    r0: int,
    r1: int,
    cols: int,
    invalid: list[int],
    span: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(valid in every layer, all-zero in a zero-rule layer and otherwise valid) of a strip;
    adds each layer's invalid pixels (within columns ``span``) to ``invalid``."""
    ok = np.ones((r1 - r0, cols), dtype=bool)
    zero = np.zeros((r1 - r0, cols), dtype=bool)
    c0, c1 = span if span is not None else (0, cols)
    for i, lay in active:
        valid, z = lay.read(r0, r1)  # type: ignore[misc]
        part = valid[:, c0:c1]
        invalid[i] += int(part.size - np.count_nonzero(part))
        ok &= valid
        if z is not None:
            zero |= z
    return ok, zero & ok


def nodata_summary(scan: ValidScan, role: str) -> str | None:
    """The rule that decided a layer's nodata and how many pixels it removed, in words.

    E.g. ``"all-zero pixels treated as nodata (2736 px)"`` for a fused file without
    declared nodata, ``"nodata value 0 (2736 px)"`` for one that declares it.
    """
    for i, lay in enumerate(scan.layers):
        if lay.role != role:
            continue
        if lay.read is None:
            return "none (integer file without nodata value or mask band)"
        parts = []
        if lay.rule != "none":
            parts.append(f"{lay.rule} ({scan.layer_invalid(i)} px)")
        if lay.zero_rule and (scan.zero_border or scan.zero_inside or not parts):
            text = f"all-zero pixels treated as nodata ({scan.zero_border} px)"
            if scan.zero_inside:
                text += f"; {scan.zero_inside} all-zero px inside the valid area scored as data"
            parts.append(text)
        return "; ".join(parts)
    return None
