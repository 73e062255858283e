"""Write the Landsat-derived 4-band ratio-4 training pairs of the ``landsat-r4`` weights.

No 4-band sensor with PAN/MS = 4 is in ``../shared/data`` for training (the WorldView-2
tiles are for testing), so the ratio-4 set is made from Landsat: each pair keeps the
real PAN (15 m) and degrades the MS (30 m) by 2 with the toolbox's MTF filter and
decimation (:func:`physics.degrade.degrade_ms`, Landsat's generic gain 0.3), so the pair
is 15 m / 60 m, ratio 4. ``pansharp train --ratio 4`` then applies Wald's protocol at
ratio 4 on top: inputs PAN at 60 m and MS at 240 m, target the 60-m MS.

Sources: the 28 Landsat 7 training crops (``landsat7_train.csv``; blue, green, red and
NIR picked by band description; the held-out ``landsat7_test.csv`` crops are not used)
and the Landsat 8 scene LC80200392015216 (B2-B5). Values are written as uint16: Landsat
8's 16-bit DN as they are, Landsat 7's 8-bit DN times 257 (so 255 -> 65535), one bit
depth for the whole set. Landsat 8 keeps its georeference (the MS geotransform from
:func:`physics.degrade.degraded_ms_transform`); the Landsat 7 crops have none, so
train with ``--ratio 4``.

The pairs are data, not code: write them outside the repository (default
``/tmp/pansharp_ratio4``)::

    python3 models/deep/weights/make_ratio4_pairs.py --out /tmp/pansharp_ratio4

then train on ``/tmp/pansharp_ratio4/ratio4.csv`` (see ``train_shipped.sh``).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import rasterio

from physics.degrade import degrade_ms, degraded_ms_transform

HERE = Path(__file__).resolve().parent
L8 = HERE.parents[2].parent / "shared" / "data" / "landsat8_lc80200392015216"
BANDS = ("blue", "green", "red", "nir")
GAIN = 0.3  # the Landsat presets' MTF gain (physics.sensors)


def _write(path: Path, data: np.ndarray, profile: dict, **tags: str) -> None:
    prof = {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "tiled": False,
        **profile,
    }
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data.astype(np.uint16))
        if data.shape[0] == len(BANDS):
            dst.descriptions = BANDS
        dst.update_tags(**tags)


def _degrade(ms: np.ndarray) -> np.ndarray:
    out = degrade_ms(ms.astype(np.float64), [GAIN] * ms.shape[0], 2)
    return np.clip(np.rint(out), 0, 65535)


def landsat7_pairs(out: Path) -> list[tuple[str, str, str]]:
    rows = []
    with open(HERE / "landsat7_train.csv", newline="") as f:
        for row in csv.DictReader(f):
            pan_p, ms_p = (HERE / row["pan"]).resolve(), (HERE / row["ms"]).resolve()
            with rasterio.open(pan_p) as d:
                pan = d.read(1).astype(np.float64) * 257.0
            with rasterio.open(ms_p) as d:
                order = [list(d.descriptions).index(b) for b in BANDS]
                ms = d.read([i + 1 for i in order]).astype(np.float64) * 257.0
            name = row["name"]
            src = f"{ms_p.name} bands {order} x257, degraded by 2"
            _write(out / f"{name}_pan.tif", pan[None], {}, SOURCE=f"{pan_p.name} x257")
            _write(out / f"{name}_ms.tif", _degrade(ms), {}, SOURCE=src)
            rows.append((name, f"{name}_pan.tif", f"{name}_ms.tif"))
    return rows


def landsat8_pair(out: Path) -> tuple[str, str, str]:
    with rasterio.open(L8 / "test_B8.tif") as d:
        pan, pan_prof = d.read(1), {"crs": d.crs, "transform": d.transform}
    bands = []
    for b in ("B2", "B3", "B4", "B5"):
        with rasterio.open(L8 / f"test_{b}.tif") as d:
            bands.append(d.read(1))
            crs, transform = d.crs, d.transform
    ms = _degrade(np.stack(bands))
    ms_prof = {"crs": crs, "transform": degraded_ms_transform(transform, 2)}
    name = "lc80200392015216"
    _write(out / f"{name}_pan.tif", pan[None], pan_prof, SOURCE="test_B8.tif")
    _write(out / f"{name}_ms.tif", ms, ms_prof, SOURCE="test_B2-B5.tif, degraded by 2")
    return name, f"{name}_pan.tif", f"{name}_ms.tif"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/pansharp_ratio4"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [*landsat7_pairs(args.out), landsat8_pair(args.out)]
    with open(args.out / "ratio4.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "pan", "ms"])
        w.writerows(rows)
    print(f"{len(rows)} pairs in {args.out / 'ratio4.csv'}")


if __name__ == "__main__":
    main()
