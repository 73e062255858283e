"""``pansharp train -m MODEL SCENES... --sensor S -o WEIGHTS.safetensors``.

Thin: opens the pairs with :func:`models.deep.readers.open_file_pairs` (headers only: the
sampler reads one window per patch, so memory follows the batch, not the scenes), trains
with :func:`models.deep.train_stages.train_stages` (every stage of the model, or
``--stage N``) and shows a progress bar with the loss and the
validation score (the library only reports through a callback).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from errors import OptionError, OutputError
from models.deep.objectives import DEFAULT_OBJECTIVE, objective_names
from models.registry import get_entry, model_names
from pansharp_cli.progress import freeze_imports, stderr, stop_bar


def _trainable() -> list[str]:
    """Models ``train`` can fit: the registry's ``trainable`` capability."""
    return [n for n in model_names() if get_entry(n).info.trainable]


def _val_text(val: dict[str, Any] | None) -> str:
    """Validation L1 (and the interpolation's, the bar to beat) and PSNR, or ""."""
    if not val or "val_l1" not in val:
        return ""
    return f"val L1 {val['val_l1']:.4f} (EXP {val['val_l1_exp']:.4f}) {val['val_psnr_db']:.1f} dB"


@contextmanager
def train_bar(
    quiet: bool, steps: int | None, time_limit: float | None
) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A rich bar on stderr fed by train()'s progress dicts: step, loss, last validation.

    Entering it starts the training, so it first calls :func:`freeze_imports`."""
    freeze_imports()
    if quiet:
        yield lambda info: None
        return
    bar = Progress(
        TextColumn("training"),
        BarColumn(bar_width=16),
        TaskProgressColumn(),
        TextColumn("step {task.fields[step]} loss {task.fields[loss]} {task.fields[val]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
    )
    by_time = steps is None
    task = bar.add_task(
        "train", total=float(time_limit or 1) if by_time else steps, step=0, loss="-", val=""
    )
    last_val: list[str] = [""]

    def update(info: dict[str, Any]) -> None:
        if info.get("val"):
            last_val[0] = _val_text(info["val"])
        total = info.get("steps_total")
        done = info["elapsed"] if by_time and not total else info["step"]
        if total and not by_time:
            bar.update(task, total=total)
        loss = info.get("loss")
        bar.update(
            task,
            completed=done,
            step=info["step"],
            loss=f"{loss:.4f}" if loss is not None else "-",
            val=last_val[0],
        )

    bar.live.start(refresh=True)
    try:
        yield update
    except BaseException:
        stop_bar(bar, failed=True)  # the error line alone, not the bar above it
        raise
    stop_bar(bar, failed=False)


def train(
    scenes: Annotated[
        list[str],
        typer.Argument(
            help="Training scenes: PAN.tif:MS.tif, a folder of *_pan.tif/*_ms.tif, or a CSV "
            "manifest with pan,ms columns.",
            show_default=False,
        ),
    ],
    model: Annotated[
        str,
        typer.Option("--model", "-m", help=f"Deep model: {', '.join(_trainable())}."),
    ],
    sensor: Annotated[str, typer.Option(help="Sensor preset of the scenes (MTF, band names).")],
    output: Annotated[str, typer.Option("--output", "-o", help="Weights file (.safetensors).")],
    ratio: Annotated[
        int | None, typer.Option(help="PAN/MS ratio, for pairs without a georeference.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Stop after this many epochs.")] = None,
    time_limit: Annotated[
        float | None, typer.Option("--time-limit", help="Stop after this many seconds.")
    ] = None,
    resume: Annotated[
        str | None, typer.Option(help="Continue from a .ckpt.safetensors checkpoint.")
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            help="Start from these weights of the same model (a warm start; ratio and "
            "sensor may differ)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (patches, initialisation).")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Patches per step.")] = 16,
    patch: Annotated[int, typer.Option(help="Patch size in (degraded) PAN pixels.")] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 5e-4,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Share of scenes held out for validation.")
    ] = 0.1,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", help="Steps between checkpoints.")
    ] = 500,
    bit_depth: Annotated[
        int | None, typer.Option("--bit-depth", help="Radiometric bit depth of the inputs.")
    ] = None,
    nodata: Annotated[float | None, typer.Option(help="Nodata value of the inputs.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar, no summary.")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the run summary as JSON on stdout.")
    ] = False,
    objective: Annotated[
        str | None,
        typer.Option(
            help=f"Training loss: {', '.join(objective_names())} (default: the model's, "
            f"{DEFAULT_OBJECTIVE} for single-pass networks)."
        ),
    ] = None,
    stage: Annotated[
        int | None,
        typer.Option(
            help="Models trained in stages (nodiff, ksdiff): run only this one (default: "
            "all, stage 1 to OUTPUT.stage1.safetensors, the last to OUTPUT)."
        ),
    ] = None,
) -> None:
    """Train a deep model on your own PAN/MS scenes (Wald's protocol) and save its weights."""
    from models.deep.objectives import get_objective
    from models.deep.readers import open_file_pairs
    from models.deep.train_stages import train_stages
    from pansharp_cli.georef import acknowledge_missing_georeference
    from physics.sensors import get_sensor
    from raster.cog import check_destination
    from raster.pairs import expand_specs

    acknowledge_missing_georeference(ratio)
    entry = get_entry(model)
    if not entry.info.trainable:
        raise OptionError(
            f"-m {model} is not a deep model with trainable weights; trainable: "
            f"{', '.join(_trainable())}"
        )
    goal = get_objective(objective) if objective is not None else None
    if not output.endswith(".safetensors"):
        raise OptionError(
            f"-o {output}: weights are written as safetensors; end it in .safetensors"
        )
    if init is not None and resume is not None:
        raise OptionError("--init and --resume exclude each other: --resume continues a run")
    if init is not None and not Path(init).is_file():
        raise OptionError(f"--init {init}: no such weights file")
    if resume is None or Path(resume).resolve() != Path(output).resolve():
        try:
            check_destination(output, overwrite)
        except OutputError as exc:
            raise OutputError(
                str(exc).replace("--overwrite", "--overwrite (or --resume)")
            ) from None
    sensor_obj = get_sensor(sensor)
    specs = expand_specs(scenes)
    data = open_file_pairs(specs, sensor_obj, ratio=ratio, bit_depth=bit_depth, nodata=nodata)
    try:
        with train_bar(quiet, steps, time_limit) as progress:
            results = train_stages(
                entry.info.name,
                data.pairs,
                sensor_obj,
                data.ratio,
                output,
                steps=steps,
                epochs=epochs,
                time_limit=time_limit,
                patch=patch,
                batch_size=batch_size,
                lr=lr,
                seed=seed,
                val_fraction=val_fraction,
                resume=resume,
                checkpoint_every=checkpoint_every,
                progress=progress,
                device=device,
                bit_depth=data.bit_depth,
                scene_names=data.names,
                band_names=data.band_names,
                objective=goal,
                init=init,
                stage=stage,
            )
    finally:
        for pair in data.pairs:
            pair.close()

    result = results[-1]
    summary = {
        "stages": [{"weights": str(r.weights), "steps": r.steps} for r in results],
        "weights": str(result.weights),
        "checkpoint": str(result.checkpoint),
        "model": result.card.model,
        "sensor": result.card.sensor,
        "bands": result.card.n_bands,
        "ratio": result.card.ratio,
        "bit_depth": result.card.bit_depth,
        "steps": result.steps,
        "scenes": len(data.pairs),
        "validation": result.card.validation,
    }
    if json_out:
        typer.echo(json.dumps(summary, default=str))
    elif not quiet:
        val = _val_text(result.card.validation) or "no held-out scene"
        typer.echo(  # one line, like fuse's summary (rich would wrap it at 80 columns)
            f"{result.weights}: {result.card.model} for {result.card.sensor}, "
            f"{result.card.n_bands} bands, ratio {result.card.ratio}, {result.steps} steps on "
            f"{len(data.pairs)} scene(s); {val}",
            err=True,
        )


def register(app: typer.Typer) -> None:
    app.command("train")(train)
