"""Reading one tile of a PAN/MS scene: PAN window plus MS resampled onto the PAN grid.

Each worker thread keeps its own rasterio handles (GDAL datasets are not thread-safe).
The MS is read in full-width strips, just tall enough for the resampling kernel's support
around one row of tiles, and the last few strips are shared by all worker threads: a
pixel-interleaved MS block read band by band, tile by tile, was decoded up to 16 times
(4 bands x the 2x2 blocks a haloed window straddles; measured 4.3 s of CPU to read a
2000^2x4 MS per 512-px tile, 0.15 s to read it once). Memory per strip grows with the
scene's width only (MS width x strip height x bands, in the input type).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack
from typing import Any

import numpy as np
import rasterio
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from errors import RasterFormatError
from models.base import FuseContext, Tile
from physics.kernels import axis_matrix, get_kernel
from raster.radiometry import LevelStats
from raster.scene import Scene
from tiling.windows import TileSpec


class TileReader:
    """Reads :class:`Tile` objects for :class:`TileSpec` windows of the output grid."""

    def __init__(
        self,
        scene: Scene,
        ctx: FuseContext,
        resampling: str = "exp",
        dtype: Any = np.float32,
        stats: LevelStats | None = None,
    ) -> None:
        self.scene = scene
        self.stats = stats  # radiometric levels of the tiles' cores, if asked
        self.ctx = ctx
        self.resampling = resampling
        self.support = get_kernel(resampling)[1]
        self.dtype = np.dtype(dtype)
        self._local = threading.local()
        self._stacks: list[ExitStack] = []
        self._lock = threading.Lock()
        self._strips = StripCache(self._load_ms_strip)
        # Resampling matrices and sample positions depend on a tile's row span (or column
        # span) only: tiles of one row share them, so they are computed once per span.
        self._axis_cache: dict[tuple[Any, ...], Any] = {}

    # -- handles -------------------------------------------------------------------
    def _handles(self) -> tuple[Any, dict[str, Any]]:
        h = getattr(self._local, "handles", None)
        if h is None:
            stack = ExitStack()
            pan = stack.enter_context(rasterio.open(self.scene.pan_path))
            ms = {}
            for path in dict.fromkeys(b.path for b in self.scene.bands):
                ds = stack.enter_context(rasterio.open(path))
                if self.scene.warp is not None:
                    ds = stack.enter_context(
                        WarpedVRT(ds, resampling=rasterio.enums.Resampling.cubic, **self.scene.warp)
                    )
                ms[path] = ds
            h = (pan, ms)
            self._local.handles = h
            with self._lock:
                self._stacks.append(stack)
        return h

    def close(self) -> None:
        with self._lock:
            for s in self._stacks:
                s.close()
            self._stacks.clear()

    # -- reading -------------------------------------------------------------------
    def read(self, spec: TileSpec) -> Tile:
        """Read the tile's read window (core + halo) and build its :class:`Tile`."""
        sc = self.scene
        win = sc.window
        r0 = int(win.row_off) + spec.read_row  # absolute PAN rows of the read window
        c0 = int(win.col_off) + spec.read_col
        rows = np.arange(r0, r0 + spec.read_height)
        cols = np.arange(c0, c0 + spec.read_width)
        out_rows = np.clip(rows, int(win.row_off), int(win.row_off + win.height) - 1)
        out_cols = np.clip(cols, int(win.col_off), int(win.col_off + win.width) - 1)
        inside = (rows == out_rows)[:, None] & (cols == out_cols)[None, :]

        pan_ds, _ = self._handles()
        pan, pan_valid = self._read_pan(pan_ds, out_rows, out_cols)
        ms, ms_valid = self._read_ms(out_rows, out_cols)
        valid = inside & pan_valid & ms_valid
        if self.stats is not None:
            core = spec.core_in_read
            self.stats.add(pan[core], ms[(slice(None), *core)], valid[core])
        sample_rows, lr_rows, phase_r = self._sample_grid(rows, sc.row_map)
        sample_cols, lr_cols, phase_c = self._sample_grid(cols, sc.col_map)
        return Tile(
            pan=pan,
            ms=ms,
            valid=valid,
            core=spec.core_in_read,
            sample_rows=sample_rows,
            sample_cols=sample_cols,
            ctx=self.ctx,
            lr_rows=lr_rows,
            lr_cols=lr_cols,
            block_phase=(phase_r, phase_c),
        )

    def _read_pan(self, ds, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """PAN over clipped rows/cols; rows outside the scene repeat the edge (replicate)."""
        lo_r, hi_r, lo_c, hi_c = rows[0], rows[-1], cols[0], cols[-1]
        window = Window(lo_c, lo_r, hi_c - lo_c + 1, hi_r - lo_r + 1)
        data = _read_window(ds, 1, window)
        nodata = self.scene.pan_nodata
        valid = _valid_mask(ds, data, nodata, window)
        data = data.astype(self.dtype, copy=False)
        ri, ci = rows - lo_r, cols - lo_c
        rs, cs = _as_slice(ri), _as_slice(ci)
        if rs is not None and cs is not None:
            return data[rs, cs], valid[rs, cs]  # inside the scene: views, no gather
        ix = np.ix_(ri, ci)  # edge tiles repeat the edge row/column
        return data[ix], valid[ix]

    def _read_ms(self, out_rows: np.ndarray, out_cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MS samples around the tile, resampled onto the tile's PAN pixels.

        Rows/cols outside the output window take the positions of the nearest edge
        pixel (like the replicated PAN), so the halo is consistent with the PAN's.
        """
        sc = self.scene
        (ar, br), (ac, bc) = sc.row_map, sc.col_map
        u = ar * out_rows + br  # continuous MS row index per output row
        v = ac * out_cols + bc
        mh, mw = sc.ms_shape
        s = self.support + 1
        m_r0, m_r1 = max(0, math.floor(u.min() - s)), min(mh, math.ceil(u.max() + s) + 1)
        m_c0, m_c1 = max(0, math.floor(v.min() - s)), min(mw, math.ceil(v.max() + s) + 1)
        strip, strip_valid = self._strips.get((m_r0, m_r1))
        # float64 sums whatever the tile dtype: a float32 product's rounding depends on the
        # BLAS blocking, i.e. on the tile's shape, and Brovey's rounding of the resampled
        # MS to integers turned those 1e-7 differences into 1-2 DN seams between tilings
        cube = strip[:, :, m_c0:m_c1].astype(np.float64)
        ms_valid = strip_valid[:, m_c0:m_c1]
        rmat, rbands = self._axis_matrix(u - m_r0, cube.shape[1])
        cmat_t, cbands = self._axis_matrix(v - m_c0, cube.shape[2])
        cmat = cmat_t.T
        if not ms_valid.all():
            # Normalised convolution: nodata samples get zero weight, weights renormalised,
            # as GDAL's nodata-aware resampling does. Validity follows the nearest sample.
            w = ms_valid.astype(np.float64)
            cube[:, ~ms_valid] = 0.0  # not ``cube *= w``: a NaN sample times 0 is NaN
            wsum = rmat @ w @ cmat
            near_r = axis_matrix(u - m_r0, cube.shape[1], "nearest")
            near_c = axis_matrix(v - m_c0, cube.shape[2], "nearest").T
            valid = (near_r @ ms_valid.astype(np.float64) @ near_c) > 0.5
        else:
            wsum = None
            valid = np.ones((u.size, v.size), dtype=bool)
        out = separable_apply(cube, rmat, cmat, bands=(rbands, cbands))
        if wsum is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                out /= np.where(np.abs(wsum) > 1e-6, wsum, 1.0)
            valid &= np.abs(wsum) > 1e-6
        return out.astype(self.dtype, copy=False), valid

    def _load_ms_strip(self, rows: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """MS rows ``[r0, r1)``, full width, every band (one read per file), and validity."""
        sc = self.scene
        r0, r1 = rows
        window = Window(0, r0, sc.ms_shape[1], r1 - r0)
        _, handles = self._handles()
        strip = np.empty((sc.n_bands, r1 - r0, sc.ms_shape[1]), dtype=_dtype_of(handles))
        valid = np.ones(strip.shape[1:], dtype=bool)
        by_path: dict[str, list[tuple[int, int]]] = {}
        for i, band in enumerate(sc.bands):
            by_path.setdefault(band.path, []).append((i, band.index))
        for path, pairs in by_path.items():
            ds = handles[path]
            data = _read_window(ds, [b for _, b in pairs], window)
            for (i, b), plane in zip(pairs, data, strict=True):
                valid &= _valid_mask(ds, plane, sc.ms_nodata, window, b)
                strip[i] = plane
        return strip, valid

    def _cached(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """``make()`` once per key, oldest entries dropped past ``AXIS_CACHE``. Two threads
        may both compute a missing entry (same result); the dict itself is locked. Arrays in
        the entry are made read-only: they are shared between tiles and threads."""
        with self._lock:
            got = self._axis_cache.get(key)
        if got is None:
            got = make()
            for part in got if isinstance(got, tuple) else (got,):
                if isinstance(part, np.ndarray):
                    part.flags.writeable = False
            with self._lock:
                if len(self._axis_cache) >= AXIS_CACHE:
                    self._axis_cache.pop(next(iter(self._axis_cache)))
                self._axis_cache[key] = got
        return got

    def _axis_matrix(self, pos: np.ndarray, n_in: int) -> tuple[np.ndarray, Bands]:
        """:func:`physics.kernels.axis_matrix` in the reader's dtype and its non-zero bands
        (for :func:`separable_apply`), cached per positions."""

        def make() -> tuple[np.ndarray, Bands]:
            mat = axis_matrix(pos, n_in, self.resampling).astype(np.float64)
            return mat, _bands(mat)

        return self._cached(("matrix", pos.tobytes(), n_in), make)

    def _sample_grid(self, idx: np.ndarray, amap: tuple[float, float]) -> SampleGrid:
        key = ("samples", int(idx[0]), int(idx[-1]), idx.size, amap)
        return self._cached(key, lambda: sample_grid(idx, amap, self.scene.ratio))


AXIS_CACHE = 256  # cached resampling matrices / sample positions per reader


Bands = list[tuple[int, int, int, int]]


def separable_apply(
    cube: np.ndarray,
    rmat: np.ndarray,
    cmat: np.ndarray,
    bands: tuple[Bands, Bands] | None = None,
) -> np.ndarray:
    """``rmat @ cube[b] @ cmat`` for every band.

    Both matrices are banded (an output pixel depends only on the kernel's support around
    its position), so each pass multiplies only the band: output columns (then rows) in
    chunks of ``_CHUNK``, each against the input columns (rows) its weights reach, all
    bands in one call, written in place. At ratio 4 with a cubic kernel a 512-px tile
    takes ~1-2 ms against ~11 ms for two dense GEMMs (single BLAS thread, 2-core machine).
    ``bands``: ``(_bands(rmat), _bands(cmat.T))`` when the caller has them cached (finding
    them took 0.2 s of CPU per 8000^2 scene, more than a third of the products' time).
    """
    b, h, w = cube.shape
    flat = cube.reshape(b * h, w)
    width = cmat.shape[1]
    tmp = np.empty((b, h, width), dtype=np.result_type(cube, cmat))
    tmp_flat = tmp.reshape(b * h, width)
    rbands, cbands = bands if bands is not None else (_bands(rmat), _bands(cmat.T))
    for c0, c1, lo, hi in cbands:
        np.matmul(flat[:, lo:hi], cmat[lo:hi, c0:c1], out=tmp_flat[:, c0:c1])
    out = np.empty((b, rmat.shape[0], width), dtype=np.result_type(tmp, rmat))
    for r0, r1, lo, hi in rbands:
        np.matmul(rmat[r0:r1, lo:hi], tmp[:, lo:hi], out=out[:, r0:r1])
    return out


_CHUNK = 64


def _bands(mat: np.ndarray) -> Bands:
    """``(r0, r1, lo, hi)``: rows ``r0:r1`` of ``mat`` are zero outside columns ``lo:hi``."""
    nz = mat != 0
    out = []
    for r0 in range(0, mat.shape[0], _CHUNK):
        r1 = min(mat.shape[0], r0 + _CHUNK)
        cols = np.flatnonzero(nz[r0:r1].any(axis=0))
        lo, hi = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 1)
        out.append((r0, r1, lo, hi))
    return out


SampleGrid = tuple[np.ndarray, np.ndarray, int]


def sample_grid(idx: np.ndarray, amap: tuple[float, float], ratio: int) -> SampleGrid:
    """Where the MS samples fall in a tile, from scene coordinates only.

    ``idx``: the scene (PAN) indices of the tile's rows (or columns), halo included;
    ``amap = (a, b)``: continuous MS index u = a i + b of PAN index i (``Scene.row_map``).
    Returns

    - the tile-local indices of the PAN pixels nearest to the sample centres: sample j
      sits at PAN index (j - b) / a, rounded (the decimation ``imresize(.., 'nearest')``
      of the toolbox);
    - each tile pixel's continuous position among the tile's samples, 0 at its first
      sample: u(i) + d - j_first, with d = -(a c_0 + b) the offset between the
      continuous grid and the rounded position c_0 = rint(-b / a) of sample 0. With an
      exact integer ratio this is (i - sample_rows[0]) / ratio, the ``interp23tap``
      phase; with a true ratio of 4.0002 the same phase follows the real sample spacing;
    - the tile-local start, in [0, ratio), of the scene's ratio x ratio block grid whose
      blocks end half a pixel after each sample (c_0 - ratio // 2 + ratio n).

    Every quantity is a function of scene indices, never of where the tile starts, so
    tiles agree with the whole image (the seams of a tile-relative phase: a sample in
    the halo beyond the scene edge rounds to the other side of x.5 at a ratio of 4.0002,
    and the phase taken from the tile's first sample jumped by a pixel).
    """
    a, b = amap
    u0, u1 = a * idx[0] + b, a * idx[-1] + b
    j = np.arange(math.ceil(u0 - 0.5 * a), math.floor(u1 + 0.5 * a) + 1)
    pos = np.rint((j - b) / a).astype(np.int64) - int(idx[0])
    keep = (pos >= 0) & (pos < idx.size)
    pos, j = pos[keep], j[keep]
    pos, first = np.unique(pos, return_index=True)
    j = j[first]
    c0 = float(np.rint(-b / a))
    offset = -(a * c0 + b)
    j_first = float(j[0]) if j.size else 0.0
    lr = a * idx.astype(np.float64) + b + offset - j_first
    phase = int(c0 - ratio // 2 - int(idx[0])) % ratio
    return pos, lr, phase


class StripCache:
    """The last ``keep`` strips, loaded once and shared by every thread that asks.

    The first thread asking for a key loads it; the others wait for that load instead of
    repeating it. Tiles are handed out row by row, so the tiles in flight need one or two
    strips at a time; the reader keeps two (each strip is scene-wide: at 4000^2 the
    evaluate benchmark's peak RSS was 457 MB keeping one, 486 MB keeping three).
    """

    def __init__(self, load: Callable[[Any], Any], keep: int = 2) -> None:
        self._load = load
        self._keep = keep
        self._lock = threading.Lock()
        self._entries: OrderedDict[Any, Future] = OrderedDict()

    def get(self, key: Any) -> Any:
        with self._lock:
            fut = self._entries.get(key)
            owner = fut is None
            if fut is None:
                fut = self._entries[key] = Future()
                while len(self._entries) > self._keep:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
        if owner:
            try:
                fut.set_result(self._load(key))
            except BaseException as exc:
                with self._lock:
                    if self._entries.get(key) is fut:
                        del self._entries[key]  # a later call retries instead of re-raising
                fut.set_exception(exc)
        return fut.result()


def _dtype_of(handles: dict[str, Any]) -> np.dtype:
    """Common numpy type of the MS files (the widest, if single-band files differ)."""
    return np.result_type(*(np.dtype(ds.dtypes[0]) for ds in handles.values()))


def _as_slice(idx: np.ndarray) -> slice | None:
    """``idx`` as a slice when it is a step-1 run (a tile inside the scene), else None:
    slicing is a view, a fancy-index gather copies (~1 ms per 512 x 512 plane)."""
    if idx.size and idx[-1] - idx[0] + 1 == idx.size and (np.diff(idx) == 1).all():
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return None


def _read_window(ds, band: int | list[int], window: Window) -> np.ndarray:
    try:
        return ds.read(band, window=window)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RasterFormatError(
            f"cannot read {ds.name} band {band} at {window!r} ({msg}); "
            "the file looks truncated or corrupt"
        ) from None


def _valid_mask(ds, data: np.ndarray, nodata, window: Window, band: int = 1) -> np.ndarray:
    """True where a pixel is data: not the nodata value, not masked by a GDAL mask band."""
    if nodata is not None:
        valid = ~np.isnan(data) if np.isnan(nodata) else data != nodata
    else:
        valid = np.ones(data.shape, dtype=bool)
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.isfinite(data)
    flags = ds.mask_flag_enums[band - 1]
    if any(f.name in ("per_dataset", "alpha") for f in flags):
        valid &= ds.read_masks(band, window=window) > 0
    return valid
