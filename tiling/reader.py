"""Reading one tile of a PAN/MS scene: PAN window plus MS resampled onto the PAN grid.

Each worker thread keeps its own rasterio handles (GDAL datasets are not thread-safe).
The MS window read is just large enough for the resampling kernel's support around
the tile, so memory per tile is independent of the scene size.
"""

from __future__ import annotations

import math
import threading
from contextlib import ExitStack
from typing import Any

import numpy as np
import rasterio
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from errors import RasterFormatError
from models.base import FuseContext, Tile
from physics.kernels import axis_matrix, get_kernel
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
    ) -> None:
        self.scene = scene
        self.ctx = ctx
        self.resampling = resampling
        self.support = get_kernel(resampling)[1]
        self.dtype = np.dtype(dtype)
        self._local = threading.local()
        self._stacks: list[ExitStack] = []
        self._lock = threading.Lock()

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

        pan_ds, ms_ds = self._handles()
        pan, pan_valid = self._read_pan(pan_ds, out_rows, out_cols)
        ms, ms_valid = self._read_ms(ms_ds, out_rows, out_cols, rows, cols)
        valid = inside & pan_valid & ms_valid
        sample_rows = self._sample_positions(rows, sc.row_map)
        sample_cols = self._sample_positions(cols, sc.col_map)
        return Tile(
            pan=pan,
            ms=ms,
            valid=valid,
            core=spec.core_in_read,
            sample_rows=sample_rows,
            sample_cols=sample_cols,
            ctx=self.ctx,
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
        return data[np.ix_(ri, ci)], valid[np.ix_(ri, ci)]

    def _read_ms(
        self, handles: dict, out_rows: np.ndarray, out_cols: np.ndarray, rows, cols
    ) -> tuple[np.ndarray, np.ndarray]:
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
        window = Window(m_c0, m_r0, m_c1 - m_c0, m_r1 - m_r0)
        cube = np.empty((sc.n_bands, m_r1 - m_r0, m_c1 - m_c0), dtype=self.dtype)
        ms_valid = np.ones(cube.shape[1:], dtype=bool)
        for i, band in enumerate(sc.bands):
            ds = handles[band.path]
            data = _read_window(ds, band.index, window)
            ms_valid &= _valid_mask(ds, data, sc.ms_nodata, window, band.index)
            cube[i] = data
        rmat = axis_matrix(u - m_r0, cube.shape[1], self.resampling).astype(self.dtype)
        cmat = axis_matrix(v - m_c0, cube.shape[2], self.resampling).T.astype(self.dtype)
        if not ms_valid.all():
            # Normalised convolution: nodata samples get zero weight, weights renormalised,
            # as GDAL's nodata-aware resampling does. Validity follows the nearest sample.
            w = ms_valid.astype(self.dtype)
            cube *= w
            wsum = rmat @ w @ cmat
            near_r = axis_matrix(u - m_r0, cube.shape[1], "nearest")
            near_c = axis_matrix(v - m_c0, cube.shape[2], "nearest").T
            valid = (near_r @ ms_valid.astype(np.float64) @ near_c) > 0.5
        else:
            wsum = None
            valid = np.ones((u.size, v.size), dtype=bool)
        out = separable_apply(cube, rmat, cmat)
        if wsum is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                out /= np.where(np.abs(wsum) > 1e-6, wsum, 1.0)
            valid &= np.abs(wsum) > 1e-6
        return out, valid

    def _sample_positions(self, idx: np.ndarray, amap: tuple[float, float]) -> np.ndarray:
        """Tile-local indices of the PAN pixels nearest to MS sample centres.

        Sample j sits at PAN index (j - b) / a; only samples whose nearest pixel lies in
        the read window are kept.
        """
        a, b = amap
        u0, u1 = a * idx[0] + b, a * idx[-1] + b
        j = np.arange(math.ceil(u0 - 0.5 * a), math.floor(u1 + 0.5 * a) + 1)
        pos = np.rint((j - b) / a).astype(np.int64) - idx[0]
        pos = pos[(pos >= 0) & (pos < idx.size)]
        return np.unique(pos)


def separable_apply(cube: np.ndarray, rmat: np.ndarray, cmat: np.ndarray) -> np.ndarray:
    """``rmat @ cube[b] @ cmat`` for every band, as two large GEMMs instead of 2B small ones.

    Columns first on the (B*h, w) stack, then rows on a (h, B*W) view: the same
    multiply-adds, fewer and larger BLAS calls (measured ~2x faster per tile).
    """
    b, h, w = cube.shape
    tmp = cube.reshape(b * h, w) @ cmat  # (B*h, W)
    tmp = tmp.reshape(b, h, -1).transpose(1, 0, 2).reshape(h, -1)  # (h, B*W)
    out = rmat @ tmp  # (H, B*W)
    return np.ascontiguousarray(out.reshape(out.shape[0], b, -1).transpose(1, 0, 2))


def _read_window(ds, band: int, window: Window) -> np.ndarray:
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
