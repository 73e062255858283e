"""``pansharp batch SCENES... -o OUTDIR``: parse options, call ``batch.run.run_batch``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pansharp_cli.fuse_options import with_fuse_options
from pansharp_cli.progress import freeze_imports, stderr, stop_bar

if TYPE_CHECKING:
    from tiling.fuse import FuseOptions


@contextmanager
def scenes_bar(quiet: bool) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A rich bar over scenes (done, failed, ETA) fed by the run's progress events."""
    if quiet:
        yield lambda info: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("scenes"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed, {task.fields[skipped]} kept"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    )
    task = None

    def update(info: dict[str, Any]) -> None:
        nonlocal task
        done = info["done"] + info["failed"] + info["skipped"]
        if task is None:
            freeze_imports()
            bar.start()
            task = bar.add_task("scenes", total=info["total"], failed=0, skipped=0)
        bar.update(task, completed=done, failed=info["failed"], skipped=info["skipped"])

    try:
        yield update
    except BaseException:
        if task is not None:
            stop_bar(bar, failed=True)
        raise
    if task is not None:
        stop_bar(bar, failed=False)


@with_fuse_options
def batch(
    ctx: typer.Context,
    scenes: Annotated[
        list[str],
        typer.Argument(
            help="A CSV manifest (pan, ms, optional out, name and fuse-option columns), a "
            "folder of NAME_pan.tif/NAME_ms.tif pairs, or globs of *_pan.tif files.",
            show_default=False,
        ),
    ],
    outdir: Annotated[str, typer.Option("--output", "-o", help="Output folder.")],
    name: Annotated[
        str, typer.Option(help="Output file name pattern: {name} and {method}.")
    ] = "{name}_{method}.tif",
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Local worker processes.", min=1)] = 1,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Run the scenes on a dask.distributed cluster: its address, or local:N "
            "for a local cluster of N workers.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Redo every scene, even complete ones.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the run summary as JSON on stdout.")
    ] = False,
    fuse_options: FuseOptions | None = None,
) -> int:
    """Fuse many scenes: one record each, resumable, fault-isolated, local or on dask."""
    from pansharp_cli.startup import library_imports

    with library_imports([*scenes, outdir]):
        from batch.run import run_batch
        from batch.scenes import list_scenes

    opts = fuse_options
    items = list_scenes(scenes, outdir, opts.method, name)
    with scenes_bar(quiet) as progress:
        result = run_batch(
            items, opts, outdir, jobs=jobs, scheduler=scheduler, force=force, progress=progress
        )
    s = result.summary
    if json_out:
        typer.echo(json.dumps({k: v for k, v in s.items()}))
    for r in result.records:
        if r["status"] == "failed":
            typer.echo(f"pansharp: {r['name']}: failed: {r['error']}", err=True)
    line = (
        f"{s['ok']} fused, {s['skipped']} kept, {s['failed']} failed of {s['scenes']} scenes "
        f"in {s['seconds']:.1f} s (records in {result.outdir / 'records'})"
    )
    typer.echo(f"pansharp: {line}", err=True)
    return result.exit_code


def register(app: typer.Typer) -> None:
    app.command("batch")(batch)
