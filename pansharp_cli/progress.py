"""The CLI's progress bar: a rich bar on stderr fed by the library's progress callback.

The library reports ``(phase, done, total)``; each phase (fit, fuse, write, ...) gets
its own bar with elapsed time and ETA. ``--quiet`` gives a callback that does nothing.
"""

from __future__ import annotations

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


@contextmanager
def progress_bar(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    """Yield a ``progress(phase, done, total)`` callback drawing rich bars on stderr."""
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
