"""``pansharp models`` and ``pansharp sensors``: registry and presets, as a table or JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from models.registry import REGISTRY, model_names
from physics.sensors import SENSORS


def models(
    json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """List every method the registry holds, by the name -m takes."""
    from models.registry import available_weights

    names = model_names()
    rows = []
    for n in names:
        info = REGISTRY[n].info
        d = info.to_dict()
        d["weights"] = available_weights(n)
        rows.append(d)
    if json_out:
        typer.echo(json.dumps(rows, indent=1, default=str))
        return
    t = Table(title="pansharp models")
    for col in ("name", "family", "title", "bands", "halo r=2/4", "fit", "weights"):
        t.add_column(col, no_wrap=col == "name")  # a name is what users copy: never broken
    for d in rows:
        hi = d["max_bands"] if d["max_bands"] is not None else "any"
        t.add_row(
            d["name"],
            d["family"],
            d["title"],
            f"{d['min_bands']}-{hi}",
            f"{d['halo_at_ratio'][2]}/{d['halo_at_ratio'][4]}",
            "yes" if d["needs_fit"] else "no",
            ", ".join(w["sensor"] for w in d["weights"]) if "weights" in d["run_options"] else "-",
        )
    Console().print(t)


def sensors(
    json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """List the sensor presets (--sensor NAME)."""
    rows = [s.to_dict() for s in SENSORS.values()]
    if json_out:
        typer.echo(json.dumps(rows, indent=1))
        return
    t = Table(title="pansharp sensors")
    for col in ("name", "title", "MS GNyq", "PAN GNyq", "bands", "bits", "ratio"):
        t.add_column(col)
    for d in rows:
        t.add_row(
            d["name"],
            d["title"],
            ", ".join(f"{g:g}" for g in d["ms_gnyq"]),
            f"{d['pan_gnyq']:g}",
            ", ".join(d["band_names"]) or "any",
            str(d["bit_depth"] or "dtype"),
            str(d["ratio"] or "any"),
        )
    Console().print(t)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("sensors")(sensors)
