"""The evaluation report: its layout (issue 3) and its JSON and CSV forms.

One place builds and writes the report, so that the three forms of ``pansharp evaluate``
(methods, ``--fused``, ``--reference``) give the same keys, the same ``protocol``
block and the same strict JSON (non-finite numbers, e.g. the PSNR of identical images,
are null), and the CLI's table, the JSON and the CSV never disagree on a value.
Layout: ``{"scene": {...}, "protocol": {"ratio", "sensor", "sensor_source",
"bit_depth", "bit_depth_source", ...}, "results": [{"method", "scale", <indexes>} or
{"method", "scale", "error"}], "warnings": [...]}``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from errors import PansharpError
from physics.sensors import Sensor
from quality.checks import BLOCK
from quality.protocols import CUT_LEADING, CUT_TRAILING, FULL_KEYS, HIGHER_IS_BETTER, REDUCED_KEYS
from raster.scene_facts import FROM_BIT_DEPTH_OPTION, FROM_SENSOR_OPTION, SceneFacts

PROTOCOL_REF = "quality.md (Vivone et al., IEEE GRSM 2021 toolbox protocol)"
CSV_COLUMNS = ("method", "scale", *REDUCED_KEYS, *FULL_KEYS, "error")
#: the report's name for a setting the user gave (raster.scene_facts names the flag)
OPTION = "option"


def finite(v: float) -> float | None:
    """JSON-safe number: non-finite values (a PSNR of identical images) become null."""
    return float(v) if math.isfinite(v) else None


def result(method: str, scale: str, values: dict[str, float]) -> dict[str, Any]:
    """One scored (method, scale): the indexes of that scale, in the protocol's order."""
    keys = REDUCED_KEYS if scale == "reduced" else FULL_KEYS
    return {"method": method, "scale": scale, **{k: float(values[k]) for k in keys}}


def failure(method: str, scale: str, exc: BaseException) -> dict[str, Any]:
    """A (method, scale) that failed: its one-line error instead of the indexes."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, PansharpError):
        msg = f"{type(exc).__name__}: {msg}"
    return {"method": method, "scale": scale, "error": msg}


def protocol_info(name: str, facts: SceneFacts, tile: int) -> dict[str, Any]:
    """The report's ``protocol``: what was decided for the scene, and by which rule."""
    sensor_source = OPTION if facts.sensor_source == FROM_SENSOR_OPTION else facts.sensor_source
    bits_source = facts.bit_depth.source
    return {
        "name": name,
        "ratio": facts.ratio,
        "sensor": facts.sensor.name,
        "sensor_source": sensor_source,
        "bit_depth": facts.bits,
        "bit_depth_source": OPTION if bits_source == FROM_BIT_DEPTH_OPTION else bits_source,
        "ms_gains": [float(g) for g in facts.ms_gains],
        "resampling": "exp (23-tap)",
        "border_cut": [CUT_LEADING, CUT_TRAILING],
        "block": BLOCK,
        "tile": tile,
        "definition": PROTOCOL_REF,
    }


def title(name: str, sensor: Sensor, ratio: int) -> str:
    """The quicklook's title."""
    return f"{Path(name).name}: sensor {sensor.name}, ratio {ratio} ({PROTOCOL_REF})"


def failures(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The results that carry an error instead of scores."""
    return [r for r in report["results"] if "error" in r]


def to_json(report: dict[str, Any]) -> str:
    """The report as strict JSON (non-finite numbers, e.g. PSNR of identical images, null)."""

    def clean(x: Any) -> Any:
        if isinstance(x, float):
            return finite(x)
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(report), indent=2, allow_nan=False) + "\n"


def to_csv(report: dict[str, Any]) -> str:
    """One row per (method, scale); indexes of the other scale left empty."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in report["results"]:
        row = {k: "" for k in CSV_COLUMNS}
        for k, v in r.items():
            if k in row:
                row[k] = repr(float(v)) if isinstance(v, float) else v
        w.writerow(row)
    return buf.getvalue()


def best_values(report: dict[str, Any], scale: str) -> dict[str, float]:
    """Per index, the best value among the methods scored at ``scale``."""
    keys = REDUCED_KEYS if scale == "reduced" else FULL_KEYS
    rows = [r for r in report["results"] if r["scale"] == scale and "error" not in r]
    best: dict[str, float] = {}
    for k in keys:
        vals = [r[k] for r in rows if not math.isnan(r[k])]
        if vals:
            best[k] = max(vals) if HIGHER_IS_BETTER[k] else min(vals)
    return best
