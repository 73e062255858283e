"""``pansharp fuse PAN MS... -m METHOD -o OUT``: parse options, call ``tiling.fuse.fuse_files``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from errors import OptionError
from pansharp_cli.fuse_options import with_fuse_options
from pansharp_cli.progress import progress_bar

if TYPE_CHECKING:
    from tiling.fuse import FuseOptions


@with_fuse_options
def fuse(
    ctx: typer.Context,
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="PAN file, then the MS: one multi-band file or one file per band (GeoTIFF, VRT).",
            show_default=False,
        ),
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="Output COG path.")],
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar, no summary.")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the run summary as JSON on stdout.")
    ] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Fuse the scene's row ranges on a dask.distributed cluster: its address, "
            "or local:N for N local worker processes.",
        ),
    ] = None,
    fuse_options: FuseOptions | None = None,
) -> None:
    """Pansharpen a PAN/MS pair into a Cloud-Optimized GeoTIFF."""
    from pansharp_cli.georef import acknowledge_missing_georeference
    from pansharp_cli.startup import library_imports

    with library_imports([*inputs, output, fuse_options.weights]):
        from tiling.fuse import fuse_files

    opts = fuse_options
    acknowledge_missing_georeference(opts.ratio)
    if len(inputs) < 2:
        raise OptionError(
            "give the PAN file and at least one MS file: pansharp fuse PAN MS... -o OUT"
        )
    if all(Path(p).exists() for p in inputs):  # a missing file is reported without waiting
        _import_torch_if_deep(inputs[0], inputs[1:], opts)
    with progress_bar(quiet) as progress:
        if scheduler is None:
            result = fuse_files(inputs[0], inputs[1:], output, opts, progress=progress)
        else:
            from batch.cluster import connect, rows_map

            with connect(scheduler) as client:
                result = fuse_files(
                    inputs[0], inputs[1:], output, opts, progress=progress,
                    rows_map=rows_map(client),
                )  # fmt: skip
    summary = result.summary()
    for warning in result.warnings:  # always: a warning is about this run's pixels
        typer.echo(f"pansharp: warning: {' '.join(warning.split())}", err=True)
    if json_out:
        typer.echo(json.dumps(summary))
    elif not quiet:
        depth = f"{result.bit_depth}-bit" if result.bit_depth else "no bit depth"
        typer.echo(
            f"{result.output}: {result.width}x{result.height}x{result.bands} {result.dtype}, "
            f"{result.pixels / 1e6:.2f} Mpx in {result.seconds:.2f} s "
            f"({result.megapixels_per_second:.2f} Mpx/s), method {result.method}, "
            f"sensor {result.sensor}, ratio {result.ratio}, "
            f"{depth} ({result.bit_depth_source})",
            err=True,
        )


def register(app: typer.Typer) -> None:
    app.command("fuse")(fuse)


def _import_torch_if_deep(pan: str, ms: list[str], opts: FuseOptions) -> None:
    """Import torch before the run when a torch method will run: it checks out on the
    scene (:func:`tiling.fuse.method_ready`, from the headers without torch).

    Why before: the import then runs without the cyclic collector (pansharp_cli.__main__)
    and outside the run's own ``seconds``. Why only then: weights that do not fit are
    refused by the run without torch (~3 s and ~280 MB saved per refusal); a classical
    method never imports it.
    """
    from errors import PansharpError
    from models.registry import get_entry
    from tiling.fuse import method_ready

    try:
        on_torch = get_entry(opts.method).info.torch
    except PansharpError:
        return
    if on_torch and method_ready(pan, ms, opts):
        import torch  # noqa: F401
