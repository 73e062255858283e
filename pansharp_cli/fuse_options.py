"""Every ``fuse`` option, declared once, for each command that fuses (``fuse``, ``batch``).

:func:`with_fuse_options` adds the options of :func:`_declared` to a command's own
parameters and hands the command one :class:`tiling.fuse.FuseOptions` built from them
(:func:`fuse_options_from`), so a new ``fuse`` option reaches ``batch`` by itself and
both parse it the same way. (This module keeps its annotations evaluated, without
``from __future__ import annotations``: Typer reads them from the merged signature.)
"""

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from errors import OptionError
from models.registry import model_names
from physics.kernels import KERNELS
from raster.profiles import PROFILES, parse_creation_options


def _declared(
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
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
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
    steps: Annotated[
        int | None,
        typer.Option(
            help="Diffusion models: DDIM sampling steps (default: the weights' card's, "
            "else the model's).",
            min=1,
        ),
    ] = None,
    adapt: Annotated[
        str | None,
        typer.Option(
            "--adapt",
            help="Deep models: adapt to the scene first: tailor (the default when given "
            "alone), swift or full.",
        ),
    ] = None,
    adapt_steps: Annotated[
        int | None, typer.Option("--adapt-steps", help="Deep models: adaptation steps.", min=1)
    ] = None,
    adapt_time: Annotated[
        float | None,
        typer.Option("--adapt-time", help="Deep models: adaptation time limit in seconds."),
    ] = None,
    save_adapted: Annotated[
        str | None,
        typer.Option(
            "--save-adapted", help="Deep models: write the adapted weights (.safetensors)."
        ),
    ] = None,
) -> None:
    """The declarations (never called)."""


FUSE_PARAMETERS = list(inspect.signature(_declared).parameters.values())
FUSE_NAMES = tuple(p.name for p in FUSE_PARAMETERS)

#: run options a method declares (RunSettings fields) -> the flag; refused by a method
#: that does not use them (models.registry.refuse_run_options)
RUN_FLAGS = {
    "weights": "--weights",
    "device": "--device",
    "batch_size": "--batch-size",
    "precision": "--precision",
    "overlap": "--overlap",
    "seed": "--seed",
    "steps": "--steps",
    "adapt": "--adapt",
    "adapt_steps": "--adapt-steps",
    "adapt_time": "--adapt-time",
    "save_adapted": "--save-adapted",
}


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


def fuse_options_from(values: dict[str, Any]) -> Any:
    """The :class:`tiling.fuse.FuseOptions` of the parsed option ``values``."""
    from models.protocol import parse_batch_size
    from tiling.fuse import FuseOptions

    tile = values["tile"]
    return FuseOptions(
        method=values["method"].strip().lower(),
        sensor=values["sensor"],
        band_weights=parse_weights(values["band_weights"]),
        resampling=values["resampling"],
        nodata=values["nodata"],
        bit_depth=values["bit_depth"],
        ratio=values["ratio"],
        tile=tile if tile is not None else 512,
        threads=values["threads"],
        dtype=values["dtype"],
        profile=values["profile"],
        creation_options=parse_creation_options(values["co"] or []),
        overwrite=values["overwrite"],
        weights=values["weights"],
        device=values["device"],
        batch_size=parse_batch_size(values["batch_size"]),
        precision=values["precision"],
        patch=tile,
        overlap=values["overlap"],
        seed=values["seed"],
        steps=values["steps"],
        adapt=values["adapt"],
        adapt_steps=values["adapt_steps"],
        adapt_time=values["adapt_time"],
        save_adapted=values["save_adapted"],
    )


def given_options(ctx: typer.Context, names: Any) -> list[str]:
    """The parameters of ``names`` typed on the command line (not left at their default)."""
    out = []
    for param in names:
        source = ctx.get_parameter_source(param)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            out.append(param)
    return out


def check_run_options(method: str, given: list[str]) -> None:
    """Refuse run options (``given``: option names typed on the command line) that
    ``method`` does not use: a classical method would ignore ``--weights`` silently,
    and a user who typed it believes a network ran. Unknown method names are left to
    the library, which lists the valid ones."""
    from errors import UnknownNameError
    from models.registry import refuse_run_options

    if not given:
        return
    try:
        refuse_run_options(method, given, RUN_FLAGS)
    except UnknownNameError:
        return


def with_fuse_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` every fuse option: it declares ``ctx: typer.Context`` and
    ``fuse_options`` (last), and receives the parsed :class:`~tiling.fuse.FuseOptions`
    there, after the run options it does not use were refused (``check_run_options``)."""
    own = inspect.signature(command)
    mine = [
        p.replace(annotation=_evaluated(p.annotation, command))
        for p in own.parameters.values()
        if p.name != "fuse_options"
    ]
    required = [p for p in mine if p.default is inspect.Parameter.empty]
    optional = [p for p in mine if p.default is not inspect.Parameter.empty]
    params = required + optional + FUSE_PARAMETERS

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {k: kwargs.pop(k) for k in FUSE_NAMES}
        ctx = kwargs.get("ctx") or next(a for a in args if isinstance(a, typer.Context))
        check_run_options(values["method"], given_options(ctx, RUN_FLAGS))
        kwargs["fuse_options"] = fuse_options_from(values)
        return command(*args, **kwargs)

    wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # Typer reads the merged signature, not the command's
    return wrapper


def _evaluated(annotation: Any, command: Callable[..., Any]) -> Any:
    """A postponed (string) annotation of ``command`` evaluated in its module."""
    if isinstance(annotation, str):
        return eval(annotation, command.__globals__)  # noqa: S307 - the module's own text
    return annotation
