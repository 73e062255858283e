"""Synthetic benchmark scenes written strip by strip, never whole in memory.

A scene is a "truth" cube given strip by strip (``truth(rows, cols) -> (B, h, n)``
float64, in DN); the PAN is its band mean and the MS its ``ratio x ratio`` block mean,
so the pair is consistent the way a sensor's is. Both are uint16, DEFLATE, tiled, on a
0.5 m PAN grid in UTM 31N (the MS grid ``ratio`` times coarser, same origin).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

STRIP = 512  # PAN rows per strip (a multiple of the ratio)

Truth = Callable[[np.ndarray, np.ndarray], np.ndarray]


def write_pair(
    folder: Path,
    n: int,
    truth: Truth,
    bands: int,
    ratio: int = 4,
    name: str = "",
    width: int | None = None,
) -> tuple[Path, Path]:
    """Write ``pan_{name}{n}.tif`` (n x n, or n rows of ``width``: ``..{n}x{width}.tif``)
    and the MS at 1/ratio of it (bands) from ``truth``; files already there are kept (the
    scene is cached between runs)."""
    w = n if width is None else int(width)
    m, mw = n // ratio, w // ratio
    tag = f"{n}" if w == n else f"{n}x{w}"
    pan_p, ms_p = folder / f"pan_{name}{tag}.tif", folder / f"ms_{name}{tag}.tif"
    if pan_p.exists() and ms_p.exists():
        return pan_p, ms_p
    kw = dict(driver="GTiff", dtype="uint16", crs="EPSG:32631", tiled=True, compress="deflate")
    pan_t = Affine(0.5, 0, 500000.0, 0, -0.5, 5000000.0)
    ms_t = Affine(0.5 * ratio, 0, 500000.0, 0, -0.5 * ratio, 5000000.0)
    with (
        rasterio.open(pan_p, "w", count=1, height=n, width=w, transform=pan_t, **kw) as pds,
        rasterio.open(ms_p, "w", count=bands, height=m, width=mw, transform=ms_t, **kw) as mds,
    ):
        cols = np.arange(w, dtype=np.float64)
        for r0 in range(0, n, STRIP):
            rows = np.arange(r0, min(n, r0 + STRIP), dtype=np.float64)
            h = rows.size
            cube = truth(rows, cols)
            pds.write(
                np.rint(cube.mean(axis=0)).astype("uint16")[None], window=((r0, r0 + h), (0, w))
            )
            ms = cube.reshape(bands, h // ratio, ratio, mw, ratio).mean(axis=(2, 4))
            mr0 = r0 // ratio
            mds.write(np.rint(ms).astype("uint16"), window=((mr0, mr0 + h // ratio), (0, mw)))
    return pan_p, ms_p
