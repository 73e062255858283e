"""``pansharp evaluate``: score methods or existing outputs with quality.md's protocol.

Three forms (issue 3), all thin wrappers around :mod:`quality.evaluate`:

- ``pansharp evaluate PAN MS... -m M1 -m M2 [--protocol reduced|full|both]``
- ``pansharp evaluate --fused OUT.tif PAN MS...`` (full resolution of any output)
- ``pansharp evaluate --reference GT.tif FUSED.tif`` (reduced resolution, made elsewhere)

A rich table goes to stdout (ideal values in a header row, the best value of each
column marked), the progress bar to stderr; ``--json``/``--csv`` write the report. The
exit status is 0 only if every method ran and was scored.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from errors import OptionError, OutputError, QualityError
from models.registry import model_names
from pansharp_cli.progress import progress_bar
from quality.protocols import FULL_KEYS, HIGHER_IS_BETTER, IDEAL, REDUCED_KEYS

HEADINGS = {
    "q2n": "Q2n",
    "q": "Q",
    "sam": "SAM (deg)",
    "ergas": "ERGAS",
    "scc": "SCC",
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "d_lambda": "D_lambda",
    "d_s": "D_S",
    "qnr": "QNR",
    "d_lambda_k": "D_lambda_K",
    "hqnr": "HQNR",
}
BEST_MARK = " *"


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.2f}" if key == "psnr" else f"{value:.4f}"


def results_table(report: dict[str, Any], scale: str) -> Table | None:
    """One table per scale: ideal row, a row per method, best value per column marked."""
    from quality.eval_report import best_values

    rows = [r for r in report["results"] if r["scale"] == scale]
    if not rows:
        return None
    keys = REDUCED_KEYS if scale == "reduced" else FULL_KEYS
    title = (
        "Reduced resolution (Wald's protocol, quality.md A)"
        if scale == "reduced"
        else "Full resolution (no reference, quality.md B)"
    )
    proto = report["protocol"]
    sensor_from = f" ({proto['sensor_source']})" if proto.get("sensor_source") else ""
    bits_from = f" ({proto['bit_depth_source']})" if proto.get("bit_depth_source") else ""
    caption = (
        f"ratio {proto['ratio']}, sensor {proto['sensor']}{sensor_from}"
        + (f", {proto['bit_depth']} bits{bits_from}" if proto.get("bit_depth") else "")
        + f"; {BEST_MARK.strip()} = best per column"
    )
    t = Table(title=title, caption=caption)
    t.add_column("method", no_wrap=True)
    for k in keys:
        arrow = "higher" if HIGHER_IS_BETTER[k] else "lower"
        t.add_column(f"{HEADINGS[k]}\n({arrow})", justify="right", no_wrap=True)
    t.add_row("ideal", *[_fmt(k, IDEAL[k]) for k in keys], style="dim", end_section=True)
    best = best_values(report, scale)
    for r in rows:
        if "error" in r:
            t.add_row(r["method"], *["failed" for _ in keys], style="red")
            continue
        cells = []
        for k in keys:
            text = _fmt(k, r[k])
            if k in best and r[k] == best[k]:
                text = f"[bold green]{text}{BEST_MARK}[/]"
            cells.append(text)
        t.add_row(r["method"], *cells)
    return t


def notes(report: dict[str, Any]) -> list[str]:
    """Lines printed under the tables: what was left out as nodata, and the warnings."""
    out = []
    area = report.get("scene", {}).get("valid_area")
    if area and area.get("left_out_px"):
        rule = report["scene"].get("fused_nodata")
        out.append(
            f"note: scored rows {area['rows'][0]}..{area['rows'][1]}, cols "
            f"{area['cols'][0]}..{area['cols'][1]} of {area['of']}; {area['left_out_px']} px "
            "of nodata border left out" + (f" (fused file: {rule})" if rule else "")
        )
    out += [f"warning: {w}" for w in report.get("warnings", [])]
    return out


def _write(path: str, text: str, flag: str) -> None:
    """Write a report file beside its destination and publish it when complete."""
    from raster.destination import staged_file

    _check_out(path, flag, ())
    with staged_file(path, overwrite=True, flag=flag) as tmp:
        tmp.write_text(text)


def _check_out(path: str | None, flag: str, inputs) -> None:
    """Fail before any work if an output file cannot be written, or is one of the inputs
    (``--csv ms.tif`` replaced the MS with text)."""
    if path is None or path == "-":
        return
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{flag} {p} is a folder; give a file name")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{flag} {p}: folder {folder} does not exist; create it first")
    from raster.destination import check_destination

    check_destination(p, True, inputs=inputs, flag=flag)


def parse_weights(items: list[str] | None) -> dict[str, str]:
    """``--weights pnn=FILE`` (repeatable) -> {method: file}."""
    out: dict[str, str] = {}
    for it in items or []:
        name, sep, path = it.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise OptionError(f"--weights {it!r} must be METHOD=FILE, e.g. pnn=pnn_wv3.safetensors")
        out[name.strip().lower()] = path.strip()
    return out


def evaluate(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="PAN then MS files (one multi-band file or one per band); with --reference, "
            "the fused file.",
            show_default=False,
        ),
    ] = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            "-m",
            help=f"Method to evaluate (repeatable): {', '.join(model_names())}.",
        ),
    ] = None,
    protocol: Annotated[
        str, typer.Option(help="reduced (Wald, with reference), full (no reference) or both.")
    ] = "both",
    sensor: Annotated[
        str | None, typer.Option(help="Sensor preset (MTF gains); default: detected.")
    ] = None,
    ratio: Annotated[
        int | None, typer.Option(help="PAN/MS ratio (ungeoreferenced inputs, --reference).")
    ] = None,
    bit_depth: Annotated[
        int | None, typer.Option("--bit-depth", help="Bit depth L: PSNR/SSIM peak 2^L - 1.")
    ] = None,
    tile: Annotated[int, typer.Option(help="Tile size in pixels.", min=32)] = 512,
    threads: Annotated[
        int | None, typer.Option(help="Worker threads (default: all cores).")
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the JSON report to FILE ('-': stdout).")
    ] = None,
    csv_out: Annotated[str | None, typer.Option("--csv", help="Write a CSV report.")] = None,
    quicklook: Annotated[
        str | None, typer.Option(help="Write a PNG of RGB quicklooks, error and HQNR maps.")
    ] = None,
    fused: Annotated[
        str | None,
        typer.Option(help="Score this existing output at full resolution against PAN MS..."),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Reference (GT) of a reduced-resolution result: --reference GT FUSED."),
    ] = None,
    weights: Annotated[
        list[str] | None,
        typer.Option(help="Weights of a deep method, METHOD=FILE (repeatable)."),
    ] = None,
    adapt: Annotated[
        str | None,
        typer.Option(
            "--adapt",
            help="Deep methods: adapt each to the inputs of each protocol first (tailor, "
            "the default when given alone; swift; full).",
        ),
    ] = None,
    adapt_steps: Annotated[
        int | None, typer.Option("--adapt-steps", help="Deep methods: adaptation steps.", min=1)
    ] = None,
    adapt_time: Annotated[
        float | None,
        typer.Option("--adapt-time", help="Deep methods: adaptation time limit in seconds."),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps", help="Diffusion methods: sampler steps (default: each one's).", min=1
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score methods (or existing outputs) with the toolbox protocol (Q2n, SAM, ERGAS, QNR ...)."""
    from pansharp_cli.georef import acknowledge_missing_georeference
    from pansharp_cli.startup import library_imports

    with library_imports([*(inputs or []), reference, fused, json_out, csv_out]):
        from quality.evaluate import (
            evaluate_fused,
            evaluate_methods,
            evaluate_reference,
            failures,
            scales_of,
            to_csv,
            to_json,
        )

    acknowledge_missing_georeference(ratio)

    args = list(inputs or [])
    methods = list(method or [])
    scales = scales_of(protocol)
    for path, flag in ((json_out, "--json"), (csv_out, "--csv"), (quicklook, "--quicklook")):
        _check_out(path, flag, [*(inputs or []), reference, fused])
    if reference is not None and fused is not None:
        raise OptionError("--reference and --fused are two different modes; give one of them")
    try:
        with progress_bar(quiet) as progress:
            if reference is not None:
                if len(args) != 1:
                    raise OptionError(
                        "--reference takes the fused file as the only input: "
                        "pansharp evaluate --reference GT.tif FUSED.tif"
                    )
                if methods:
                    raise OptionError("-m runs methods; --reference scores an existing result")
                if "full" in scales and protocol.strip().lower() != "both":
                    raise OptionError(
                        "--reference is the reduced-resolution protocol; drop --protocol"
                    )
                report = evaluate_reference(
                    reference,
                    args[0],
                    ratio=ratio,
                    sensor=sensor,
                    bit_depth=bit_depth,
                    tile=tile,
                    threads=threads,
                    progress=progress,
                    quicklook=quicklook,
                )
            elif fused is not None:
                if len(args) < 2:
                    raise OptionError(
                        "--fused needs the PAN and the MS: "
                        "pansharp evaluate --fused OUT.tif PAN MS..."
                    )
                if methods:
                    raise OptionError("-m runs methods; --fused scores an existing output")
                if "reduced" in scales and protocol.strip().lower() != "both":
                    raise OptionError(
                        "--fused is scored at full resolution (no reference); for reduced "
                        "resolution use --reference GT.tif FUSED.tif"
                    )
                report = evaluate_fused(
                    fused,
                    args[0],
                    args[1:],
                    sensor=sensor,
                    ratio=ratio,
                    bit_depth=bit_depth,
                    tile=tile,
                    threads=threads,
                    progress=progress,
                    quicklook=quicklook,
                )
            else:
                if len(args) < 2:
                    raise OptionError(
                        "give the PAN file and at least one MS file: "
                        "pansharp evaluate PAN MS... -m METHOD"
                    )
                report = evaluate_methods(
                    args[0],
                    args[1:],
                    methods,
                    protocol=protocol,
                    sensor=sensor,
                    ratio=ratio,
                    bit_depth=bit_depth,
                    tile=tile,
                    threads=threads,
                    progress=progress,
                    quicklook=quicklook,
                    weights=parse_weights(weights),
                    adapt=(adapt, adapt_steps, adapt_time),
                    steps=steps,
                )
            if failures(report):  # leave the bar with an exception: it is erased, so
                raise _Failed(report)  # stderr holds the one error line only
    except _Failed as failed:
        report = failed.report

    text = to_json(report)
    if json_out == "-":
        typer.echo(text, nl=False)
    else:
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
        for scale in ("reduced", "full"):
            table = results_table(report, scale)
            if table is not None:
                console.print(table)
        for line in notes(report):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        if json_out:
            _write(json_out, text, "--json")
    if csv_out:
        _write(csv_out, to_csv(report), "--csv")
    bad = failures(report)
    if bad:
        detail = "; ".join(f"{r['method']} ({r['scale']}): {r['error']}" for r in bad)
        raise QualityError(f"{len(bad)} of {len(report['results'])} evaluations failed: {detail}")


class _Failed(Exception):
    """Some evaluations failed: carries the report out of the progress bar's block."""

    def __init__(self, report: dict) -> None:
        super().__init__("evaluations failed")
        self.report = report


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
