"""The overviews of every output, whichever writer makes the file: how many, their sizes,
their pixels.

One specification for both writers (:mod:`raster.fastcog` writes them as it goes; for
GDAL's COG driver, :class:`raster.stage.RawStage` computes them and the driver copies
them), so that the profile never changes an overview:

* level k is ``ceil(h / 2^k) x ceil(w / 2^k)`` (what ``gdaladdo`` makes); levels are added
  while the last one is wider or taller than the block (``OVERVIEWS=AUTO``), or exactly
  ``OVERVIEW_COUNT`` of them (GDAL's meaning of that option; none past 1 x 1), or none
  (``OVERVIEWS=NONE``);
* each pixel of level k is the 2x2 mean of level k - 1 (``OVERVIEW_RESAMPLING=AVERAGE``,
  the profiles' setting) or its top-left pixel (``NEAREST``): nodata samples left out,
  nodata where all four are, integers rounded half up (``floor(mean + 0.5)``), an integer
  mean of valid samples that rounds onto the nodata value moved one DN off it, an odd
  last row or column repeated; floats are averaged in float64.

Why not GDAL's own averaging for the COG driver's files: it is the same numbers on
levels of exactly half the size for unsigned integers and for floats with nodata
(tested), but the driver sizes a level ``floor(w / 2)``, so on an odd side every pixel
is a weighted mean over 2.002 source pixels (1203 -> 601: up to 2302 DN from the 2x2
mean of uint16 noise); it rounds negative halves the other way (int16 noise in -50..49:
1 DN, 2 DN with nodata -7, and 19 DN one level further); and float32 means without nodata
differ in the last bit.
GDAL's default, CUBIC, is up to 370 DN off these means on GSA's output of the WorldView-2
tile in ../shared/data (743 DN in the issue).
"""

from __future__ import annotations

import math

import numpy as np

OURS = ("AVERAGE", "NEAREST")  # the resamplings this module computes


def overview_sizes(
    height: int, width: int, block: int, options: dict[str, str]
) -> list[tuple[int, int]]:
    """``(height, width)`` of each overview level, largest first (see the module docstring).

    ``options``: creation options with upper-case keys (``OVERVIEWS``, ``OVERVIEW_COUNT``).
    """
    if str(options.get("OVERVIEWS", "AUTO")).upper() == "NONE":
        return []
    count = options.get("OVERVIEW_COUNT")
    sizes: list[tuple[int, int]] = []
    h, w = height, width
    while True:
        if count is None:
            if h <= block and w <= block:
                break
        elif len(sizes) == int(count) or (h == 1 and w == 1):
            break
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        sizes.append((h, w))
    return sizes


def downsample2(
    arr: np.ndarray, nodata: float | None, resampling: str, band_axis: int = -1
) -> np.ndarray:
    """Halve a block: 2x2 mean (nodata-aware) or nearest; odd edges keep their last
    row/column (ceil(h/2) x ceil(w/2), the next level's size).

    ``band_axis=-1``: a pixel-interleaved (h, w, B) block, as the raw overview levels are
    stored; ``band_axis=0``: (B, h, w) band planes, as the engine hands the full resolution
    over. The result has the input's layout. Integer means of planes run on contiguous
    rows (0.49 ms for a 512 x 512 x 4 uint16 tile, interleaving the result included,
    against 1.21 ms on the interleaved tile).
    """
    y = 1 if band_axis == 0 else 0  # the first spatial axis
    lead = (slice(None),) * y
    if resampling == "NEAREST":
        return np.ascontiguousarray(arr[(*lead, slice(None, None, 2), slice(None, None, 2))])
    h, w = arr.shape[y], arr.shape[y + 1]
    ph, pw = h + (h & 1), w + (w & 1)
    if (ph, pw) != (h, w):
        pad = [(0, 0)] * arr.ndim
        pad[y], pad[y + 1] = (0, ph - h), (0, pw - w)
        arr = np.pad(arr, pad, mode="edge")
    if nodata is None and arr.dtype.kind in "iu" and arr.dtype.itemsize <= 2:
        # exact integer sums, round half up as GDAL's average does
        even, odd = slice(0, None, 2), slice(1, None, 2)
        rows = np.add(arr[(*lead, even)], arr[(*lead, odd)], dtype=np.int32)
        s = rows[(*lead, slice(None), even)] + rows[(*lead, slice(None), odd)]
        s += 2
        s >>= 2
        return s.astype(arr.dtype)
    if band_axis == 0:  # the general case on the interleaved layout
        return np.moveaxis(downsample2(np.moveaxis(arr, 0, -1), nodata, resampling), -1, 0)
    x = arr.astype(np.float64).reshape(ph // 2, 2, pw // 2, 2, -1)
    if nodata is None:
        mean = x.mean(axis=(1, 3))
        invalid = None
    else:
        valid = ~np.isnan(x) if np.isnan(nodata) else x != nodata
        n = valid.sum(axis=(1, 3))
        mean = np.where(valid, x, 0.0).sum(axis=(1, 3)) / np.maximum(n, 1)
        invalid = n == 0
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        mean = np.clip(np.floor(mean + 0.5), info.min, info.max)
    out = mean.astype(arr.dtype)
    if invalid is not None:
        nd = arr.dtype.type(nodata)
        if arr.dtype.kind in "iu":  # a valid mean that rounds onto nodata stays data
            hit = ~invalid & (out == nd)
            out[hit] = nd + 1 if nd < np.iinfo(arr.dtype).max else nd - 1
        out[invalid] = nd
    return out
