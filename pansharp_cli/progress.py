"""The CLI's progress bar: a rich bar on stderr fed by the library's progress callback.

The library reports ``(phase, done, total)``; each phase (fit, fuse, write, ...) gets
its own bar with elapsed time and ETA. ``--quiet`` gives a callback that does nothing.

The bar starts with the first report and is erased when the work fails: a refusal
raised before any progress (a missing file, a weights mismatch) or a failure midway must
leave exactly the one ``pansharp: error:`` line on stderr. (rich's ``Live`` prints its
final render when it stops on a stream that is not a terminal, and rich's ``Progress.stop``
adds an empty line there: a bar entered before a refusal wrote that empty line ahead of
the error. The bar is stopped through its ``Live`` display, which prints no extra line.)
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
    "adapt": "adapting",
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

    The first report starts the long work, so it first calls :func:`freeze_imports`:
    everything the library imported while preparing (torch and the network's weights
    for a deep model, loaded only once the weights are known to fit) is frozen with the
    rest, and imported without the collector. Leaving the block with an exception
    erases the bar (see the module docstring).
    """
    started = [False]

    def start() -> None:
        if not started[0]:
            started[0] = True
            freeze_imports()

    if quiet:

        def silent(phase: str, done: int, total: int) -> None:
            start()

        yield silent
        return
    bar = Progress(
        TextColumn("{task.description:<30}"),
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
        start()
        key, _, detail = phase.partition(":")  # "adapt:loss 0.012": the phase, its detail
        label = PHASES.get(key, key) + (f" ({detail})" if detail else "")
        if key not in tasks:
            tasks[key] = bar.add_task(label, total=max(total, 1))
            bar.live.start(refresh=True)  # a no-op once started
        bar.update(tasks[key], completed=done, total=max(total, 1), description=label)

    try:
        yield update
    except BaseException:
        stop_bar(bar, failed=True)
        raise
    stop_bar(bar, failed=False)


def stop_bar(bar: Progress, failed: bool) -> None:
    """Stop ``bar``: its final state stays on success, nothing of it stays on failure.

    Not ``bar.stop()``, which writes an empty line on a stream that is not a terminal,
    even when nothing was drawn (see the module docstring). On failure the display is
    made transient first: rich then prints no final render and erases what a terminal
    shows, so the error line is all that remains.
    """
    live = bar.live
    drawn = live.is_started
    if failed:
        live.transient = True
    live.stop()
    if drawn and not failed and not bar.console.is_interactive:
        bar.console.print()  # ends the final render's line (a terminal's stop() does it)
