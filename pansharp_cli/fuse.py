"""``pansharp fuse PAN MS... -m METHOD -o OUT``: parse options, call ``tiling.fuse.fuse_files``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from errors import OptionError
from models.registry import model_names
from pansharp_cli.progress import progress_bar
from physics.kernels import KERNELS
from raster.profiles import PROFILES, parse_creation_options

if TYPE_CHECKING:
    from tiling.fuse import FuseOptions


def parse_weights(text: str | None) -> list[float] | None:
    """``"0.1,0.4,0.4,0.1"`` -> floats; a bad value names --band-weights."""
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise OptionError(
            f"--band-weights {text!r} must be comma-separated numbers, e.g. 0.1,0.4,0.4,0.1"
        ) from None


RUN_FLAGS = {  # fuse() parameter (a RunSettings field) -> its option; methods declare theirs
    "weights": "--weights",
    "device": "--device",
    "batch_size": "--batch-size",
    "precision": "--precision",
    "overlap": "--overlap",
    "seed": "--seed",
}


def check_run_options(method: str, given: list[str]) -> None:
    """Refuse run options (``given``: FuseOptions/RunSettings field names typed on the
    command line) that ``method`` does not use: a classical method would ignore
    ``--weights`` silently, and a user who typed it believes a network ran. Unknown
    method names are left to the library, which lists the valid ones."""
    from errors import UnknownNameError
    from models.registry import refuse_run_options

    if not given:
        return
    try:
        refuse_run_options(method, given, RUN_FLAGS)
    except UnknownNameError:
        return


def _given(ctx: typer.Context, names: dict[str, str]) -> list[str]:
    """The parameters of ``names`` typed on the command line (not left at their default)."""
    out = []
    for param in names:
        source = ctx.get_parameter_source(param)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            out.append(param)
    return out


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
    method: Annotated[
        str,
        typer.Option(
            "--method",
            "-m",
            help=f"Method ({', '.join(model_names())}); see 'pansharp models'.",
            autocompletion=lambda: model_names(),
        ),
    ] = "gsa",
    sensor: Annotated[
        str | None, typer.Option(help="Sensor preset (see 'pansharp sensors'); default: detected.")
    ] = None,
    band_weights: Annotated[
        str | None, typer.Option("--band-weights", "-w", help="Pseudo-PAN weights W1,W2,...")
    ] = None,
    resampling: Annotated[
        str,
        typer.Option("--resampling", "-r", help=f"MS resampling: {', '.join(KERNELS)}."),
    ] = "exp",
    nodata: Annotated[float | None, typer.Option(help="Nodata value of the inputs.")] = None,
    bit_depth: Annotated[
        int | None, typer.Option("--bit-depth", help="Radiometric bit depth of the inputs.")
    ] = None,
    ratio: Annotated[
        int | None, typer.Option(help="PAN/MS ratio, for inputs without a georeference.")
    ] = None,
    tile: Annotated[
        int | None,
        typer.Option(
            help="Tile size in PAN pixels (default 512; deep models: patch size, default "
            "from the receptive field).",
            min=16,
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Worker threads (default: all cores).")
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="Output data type (default: the MS type), e.g. float32.")
    ] = None,
    profile: Annotated[
        str, typer.Option(help=f"Output profile: {', '.join(PROFILES)}.")
    ] = "deflate",
    co: Annotated[
        list[str] | None, typer.Option("--co", help="GDAL creation option KEY=VALUE (repeatable).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar, no summary.")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the run summary as JSON on stdout.")
    ] = False,
    weights: Annotated[
        str | None,
        typer.Option(help="Deep models: .safetensors weights (default: shipped for the sensor)."),
    ] = None,
    device: Annotated[str, typer.Option(help="Deep models: auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[
        str, typer.Option("--batch-size", help="Deep models: patches per batch, or auto.")
    ] = "auto",
    precision: Annotated[
        str, typer.Option(help="Deep models: fp32, or fp16/bf16 autocast on CUDA.")
    ] = "fp32",
    overlap: Annotated[
        int | None,
        typer.Option(help="Deep models: pixels shared by neighbouring patches.", min=0),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(help="Stochastic models: seed of the noise (drawn by pixel position)."),
    ] = 0,
) -> None:
    """Pansharpen a PAN/MS pair into a Cloud-Optimized GeoTIFF."""
    from pansharp_cli.georef import acknowledge_missing_georeference
    from pansharp_cli.startup import library_imports

    with library_imports([*inputs, output, weights]):
        from models.protocol import parse_batch_size
        from tiling.fuse import FuseOptions, fuse_files

    acknowledge_missing_georeference(ratio)
    if len(inputs) < 2:
        raise OptionError(
            "give the PAN file and at least one MS file: pansharp fuse PAN MS... -o OUT"
        )
    check_run_options(method, _given(ctx, RUN_FLAGS))
    opts = FuseOptions(
        method=method.strip().lower(),
        sensor=sensor,
        band_weights=parse_weights(band_weights),
        resampling=resampling,
        nodata=nodata,
        bit_depth=bit_depth,
        ratio=ratio,
        tile=tile if tile is not None else 512,
        threads=threads,
        dtype=dtype,
        profile=profile,
        creation_options=parse_creation_options(co or []),
        overwrite=overwrite,
        weights=weights,
        device=device,
        batch_size=parse_batch_size(batch_size),
        precision=precision,
        patch=tile,
        overlap=overlap,
        seed=seed,
    )
    if all(Path(p).exists() for p in inputs):  # a missing file is reported without waiting
        _import_torch_if_deep(inputs[0], inputs[1:], opts)
    with progress_bar(quiet) as progress:
        result = fuse_files(inputs[0], inputs[1:], output, opts, progress=progress)
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
