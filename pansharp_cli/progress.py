"""The CLI's progress bar: a rich bar on stderr fed by the library's progress callback.

The library reports ``(phase, done, total)``; each phase (fit, fuse, write, ...) gets
its own bar with elapsed time and ETA. ``--quiet`` gives a callback that does nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr = Console(stderr=True)

PHASES = {
    "fit": "estimating coefficients",
    "fuse": "fusing",
    "write": "writing COG",
    "reduced": "reduced resolution",
    "full": "full resolution",
    "train": "training",
}


def freeze_imports() -> None:
    """Take every object alive now (the imported modules: ~600, most of the process's
    objects) out of the cyclic garbage collector's reach (:func:`gc.freeze`), and turn
    the collector on for the work (the process starts without it: pansharp_cli.__main__).

    Why: each full collection during the run and the one at interpreter exit walk them
    all for nothing, since modules stay until the end (measured on an 8000^2 Brovey fuse:
    0.4 s from the end of the work to the process exit, 0.2 s frozen). The CLI owns the
    process, so it decides this, just before the long work; the library never does.
    """
    gc.freeze()
    gc.enable()


@contextmanager
def progress_bar(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    """Yield a ``progress(phase, done, total)`` callback drawing rich bars on stderr.

    Entering it starts a command's long work, so it first calls :func:`freeze_imports`.
    """
    freeze_imports()
    if quiet:
        yield lambda phase, done, total: None
        return
    bar = Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(PHASES.get(phase, phase), total=max(total, 1))
        bar.update(tasks[phase], completed=done, total=max(total, 1))

    with bar:
        yield update
