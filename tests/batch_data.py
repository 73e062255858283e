"""Scenes for the batch tests: copies and crops of the embedded Landsat 8 sample, and
two broken ones (a truncated MS, an MS that does not overlap its PAN)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

SAMPLE = Path(__file__).resolve().parents[1] / "sample_scenes" / "landsat8"
PAN = SAMPLE / "LC80200392015216_B8.tif"
MS_BANDS = [SAMPLE / f"LC80200392015216_B{b}.tif" for b in (2, 3, 4, 5)]
#: (name, PAN window (col, row, width, height)) of the good scenes; None: the whole scene
GOOD = [
    ("copy1", None),
    ("copy2", None),
    ("copy3", None),
    ("cropA", (0, 0, 600, 240)),
    ("cropB", (200, 40, 700, 256)),
    ("cropC", (380, 100, 620, 200)),
]
BROKEN = ["truncated", "nooverlap"]


def _write(path: Path, arr: np.ndarray, profile: dict, transform: Affine) -> None:
    prof = {**profile, "count": arr.shape[0], "height": arr.shape[1], "width": arr.shape[2]}
    prof.update(transform=transform, driver="GTiff", tiled=False)
    prof.pop("blockxsize", None)
    prof.pop("blockysize", None)
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(arr)


def make_scenes(folder: Path) -> list[str]:
    """Write NAME_pan.tif / NAME_ms.tif for the 8 scenes into ``folder``; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(PAN) as ds:
        pan, pan_prof, pan_t = ds.read(), ds.profile, ds.transform
    bands = []
    for p in MS_BANDS:
        with rasterio.open(p) as ds:
            bands.append(ds.read(1))
            ms_prof, ms_t = ds.profile, ds.transform
    ms = np.stack(bands)
    for name, win in GOOD:
        if win is None:
            _write(folder / f"{name}_pan.tif", pan, pan_prof, pan_t)
            _write(folder / f"{name}_ms.tif", ms, ms_prof, ms_t)
            continue
        c, r, w, h = win
        pw = Window(c, r, w, h)
        mw = Window(c // 2, r // 2, w // 2, h // 2)
        _write(folder / f"{name}_pan.tif", pan[:, r : r + h, c : c + w], pan_prof,
               rasterio.windows.transform(pw, pan_t))  # fmt: skip
        _write(folder / f"{name}_ms.tif", ms[:, r // 2 : (r + h) // 2, c // 2 : (c + w) // 2],
               ms_prof, rasterio.windows.transform(mw, ms_t))  # fmt: skip
    _write(folder / "truncated_pan.tif", pan, pan_prof, pan_t)
    _write(folder / "truncated_ms.tif", ms, ms_prof, ms_t)
    data = (folder / "truncated_ms.tif").read_bytes()
    (folder / "truncated_ms.tif").write_bytes(data[: len(data) // 3])
    _write(folder / "nooverlap_pan.tif", pan, pan_prof, pan_t)
    far = Affine(ms_t.a, 0, ms_t.c + 200_000, 0, ms_t.e, ms_t.f)
    _write(folder / "nooverlap_ms.tif", ms, ms_prof, far)
    return [n for n, _ in GOOD] + BROKEN
