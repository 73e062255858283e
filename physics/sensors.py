"""Sensor presets: one table, looked up by name (``--sensor``, ``pansharp sensors``).

MTF gains at Nyquist (GNyq) are those of the reference toolbox (Vivone et al., IEEE
GRSM 2021: ``MTF.m``/``MTF_PAN.m``); GaoFen-2's MS gains are PanCollection's. Where the
toolbox has no entry (Pleiades, Landsat, GaoFen-2 PAN) the toolbox's generic values
(0.3 MS, 0.15 PAN) stand in, and the table says so in ``notes``.

Spectral weights are the default pseudo-PAN weights (``--band-weights``); ``None``
means equal weights, gdal_pansharpen's default. Landsat PAN (band 8) covers neither
the blue nor the NIR band on Landsat 8 (0.50-0.68 um) and not the blue band on
Landsat 7 (0.52-0.90 um), which the weights reflect.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from errors import unknown_name


@dataclass(frozen=True)
class Sensor:
    """One sensor preset."""

    name: str
    title: str
    ms_gnyq: tuple[float, ...]
    pan_gnyq: float
    band_names: tuple[str, ...]
    bit_depth: int | None
    weights: tuple[float, ...] | None = None
    ratio: int | None = None
    notes: str = ""
    # Band subsets the sensor is also delivered as, by band count: WorldView-2/3's
    # 4-band products are blue, green, red, NIR1 (not the first four of the 8 bands).
    products: tuple[tuple[str, ...], ...] = ()

    def gains(self, n_bands: int) -> tuple[float, ...]:
        """MS gains for an image of ``n_bands`` bands: the first B entries (quality.md),
        padded with the last gain when the image has more bands than the table."""
        g = self.ms_gnyq[:n_bands]
        return g + (g[-1],) * (n_bands - len(g))

    def band_weights(self, n_bands: int) -> tuple[float, ...]:
        """Default pseudo-PAN weights; equal weights when the table has none for B bands."""
        if self.weights is not None and len(self.weights) == n_bands:
            return self.weights
        return (1.0 / n_bands,) * n_bands

    def band_order(self, descriptions: list[str | None]) -> list[int] | None:
        """Indices into the preset's bands for the image's bands: by band description
        (e.g. Landsat 7 crops stored red, green, blue ...; "nir" names NIR1 where the
        sensor has two), else the delivered product with that many bands; None when
        neither says."""
        table = [b.lower() for b in self.band_names]
        names = [str(d).strip().lower() if d else "" for d in descriptions]
        if "nir" not in table and "nir1" in table:
            names = ["nir1" if n == "nir" else n for n in names]
        if all(names) and len(set(names)) == len(names) and set(names) <= set(table):
            return [table.index(n) for n in names]
        if len(descriptions) != len(table):
            for product in self.products:
                if len(product) == len(descriptions):
                    return [table.index(b) for b in product]
        return None

    def names_for(self, n_bands: int, descriptions: list[str | None]) -> list[str | None]:
        """Band names of the image by :meth:`band_order` (the table's, if it has B bands)."""
        order = self.band_order(descriptions)
        if order is not None:
            return [self.band_names[i] for i in order]
        if len(self.band_names) == n_bands:
            return list(self.band_names)
        return [None] * n_bands

    def gains_for(self, descriptions: list[str | None]) -> tuple[float, ...]:
        """MS gains in the image's band order (by description), else the first B entries."""
        order = self.band_order(descriptions)
        full = self.gains(len(self.band_names)) if self.band_names else ()
        if order is not None and len(full) == len(self.band_names):
            return tuple(full[i] for i in order)
        return self.gains(len(descriptions))

    def weights_for(self, descriptions: list[str | None]) -> tuple[float, ...]:
        """Pseudo-PAN weights in the image's band order (by description), renormalised."""
        order = self.band_order(descriptions)
        if order is not None and self.weights is not None:
            w = [self.weights[i] for i in order]
            total = sum(w)
            if total > 0:
                return tuple(x / total for x in w)
        return self.band_weights(len(descriptions))

    def to_dict(self) -> dict:
        return asdict(self)


_WV2_BANDS = ("coastal", "blue", "green", "yellow", "red", "rededge", "nir1", "nir2")
_BGRN = ("blue", "green", "red", "nir")
_WV_4BAND = ("blue", "green", "red", "nir1")  # the 4-band MS product (Maxar)

SENSORS: dict[str, Sensor] = {
    s.name: s
    for s in (
        Sensor("generic", "Generic sensor (toolbox defaults)", (0.3,), 0.15, (), None),
        Sensor("quickbird", "QuickBird", (0.34, 0.32, 0.30, 0.22), 0.15, _BGRN, 11, ratio=4),
        Sensor("ikonos", "IKONOS", (0.26, 0.28, 0.29, 0.28), 0.17, _BGRN, 11, ratio=4),
        Sensor("geoeye1", "GeoEye-1", (0.23, 0.23, 0.23, 0.23), 0.16, _BGRN, 11, ratio=4),
        Sensor(
            "worldview2",
            "WorldView-2",
            (0.35,) * 7 + (0.27,),
            0.11,
            _WV2_BANDS,
            11,
            ratio=4,
            products=(_WV_4BAND,),
        ),
        Sensor(
            "worldview3",
            "WorldView-3",
            (0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315),
            0.14,
            _WV2_BANDS,
            11,
            ratio=4,
            products=(_WV_4BAND,),
        ),
        Sensor(
            "pleiades",
            "Pleiades 1A/1B",
            (0.3, 0.3, 0.3, 0.3),
            0.15,
            _BGRN,
            12,
            ratio=4,
            notes="toolbox generic gains",
        ),
        Sensor(
            "gaofen2",
            "GaoFen-2",
            (0.25, 0.21, 0.20, 0.15),
            0.15,
            _BGRN,
            10,
            ratio=4,
            notes="MS gains from PanCollection; PAN gain is the toolbox generic value",
        ),
        Sensor(
            "landsat7",
            "Landsat 7 ETM+",
            (0.3,) * 6,
            0.15,
            ("blue", "green", "red", "nir", "swir1", "swir2"),
            8,
            weights=(0.0, 1 / 3, 1 / 3, 1 / 3, 0.0, 0.0),
            ratio=2,
            notes="toolbox generic gains; bands B1-B5, B7",
        ),
        Sensor(
            "landsat8",
            "Landsat 8/9 OLI",
            (0.3,) * 4,
            0.15,
            ("blue", "green", "red", "nir"),
            16,
            weights=(0.0, 0.5, 0.5, 0.0),
            ratio=2,
            notes="toolbox generic gains; bands B2-B5; L1 DN scaled to 16 bits",
        ),
        Sensor(
            "landsat-r4",
            "Landsat-derived 4 bands at ratio 4 (training set of the ratio-4 weights)",
            (0.3,) * 4,
            0.15,
            ("blue", "green", "red", "nir"),
            16,
            weights=(0.0, 0.5, 0.5, 0.0),
            ratio=4,
            notes=(
                "Landsat 7/8 PAN with the MS degraded by 2 (MTF, toolbox decimation), so "
                "PAN/MS = 4; DN in 16 bits (Landsat 7's 8 bits x 257); the starting point "
                "for 4-band ratio-4 sensors, tailored to them by --adapt"
            ),
        ),
    )
}

ALIASES = {
    "qb": "quickbird",
    "geoeye-1": "geoeye1",
    "ge1": "geoeye1",
    "wv2": "worldview2",
    "worldview-2": "worldview2",
    "wv3": "worldview3",
    "worldview-3": "worldview3",
    "gf2": "gaofen2",
    "gaofen-2": "gaofen2",
    "landsat9": "landsat8",
    "landsat-7": "landsat7",
    "landsat-8": "landsat8",
    "none": "generic",
}


def get_sensor(name: str) -> Sensor:
    """Look a sensor up by name or alias (case-insensitive); unknown names list the valid ones."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in SENSORS:
        raise unknown_name("sensor", name, sorted(SENSORS), "--sensor")
    return SENSORS[key]


_MTL_SPACECRAFT = re.compile(r'SPACECRAFT_ID\s*=\s*"?LANDSAT_(\d)"?')
_SATID = {"QB02": "quickbird", "WV02": "worldview2", "WV03": "worldview3", "GE01": "geoeye1"}


def detect_sensor(
    paths: list[Path], tags: dict[str, str] | None = None, n_bands: int | None = None
) -> Sensor | None:
    """Guess the sensor from metadata: a Landsat MTL beside the files, satellite tags, or
    the band count where only one preset has it (8: WorldView-2, the toolbox's default
    8-band sensor; 6: Landsat 7 ETM+ reflective bands).

    Returns ``None`` when nothing identifies it, so the caller falls back to
    ``generic`` with gains for the image's band count.
    """
    for p in paths:
        for mtl in sorted(p.parent.glob("*_MTL.txt")):
            stem = mtl.name[: -len("_MTL.txt")]
            if not p.name.startswith(stem):
                continue
            m = _MTL_SPACECRAFT.search(mtl.read_text(errors="replace"))
            if m:
                return SENSORS["landsat7" if m.group(1) == "7" else "landsat8"]
    tags = tags or {}
    for key in ("SATELLITEID", "SATID", "SENSOR", "MISSION"):
        value = str(tags.get(key, "")).upper()
        if value in _SATID:
            return SENSORS[_SATID[value]]
        for name, s in SENSORS.items():
            if value and value.replace("-", "").replace(" ", "").lower() == name:
                return s
    return {8: SENSORS["worldview2"], 6: SENSORS["landsat7"]}.get(n_bands or 0)
