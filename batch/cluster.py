"""dask.distributed: a batch's scenes as tasks, or one scene's row ranges as tasks.

``--scheduler ADDRESS`` connects to a cluster the user started (``dask scheduler``,
then ``dask worker ADDRESS`` on each machine); ``--scheduler local:N`` starts a
``LocalCluster`` of N worker processes sharing this machine's cores. Every worker must
see the inputs and the output folder at the same paths (shared storage: NFS, a
parallel file system, one machine), and run the same pansharp (same environment).

- Scenes (:func:`run_on_cluster`): one task per scene (:func:`batch.worker.run_scene`),
  records gathered as they finish. A worker that dies has its scene rescheduled on
  another by the scheduler itself (``distributed.scheduler.allowed-failures``); a scene
  whose task raises (never for a scene's own fault: that is a record) is retried
  :data:`RETRIES` times.
- One scene (:func:`rows_map`, for :func:`tiling.fuse.fuse_files`): its row ranges are
  tasks (:func:`tiling.rows.fuse_rows`); the prepared method is sent to the workers
  once (``scatter``), results come back in order, at most :data:`IN_FLIGHT_PER_WORKER`
  tasks per worker ahead of the writer, so the client holds a bounded number of
  encoded strips.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from errors import OptionError

RETRIES = 1
IN_FLIGHT_PER_WORKER = 2
CONNECT_TIMEOUT_S = 20


@contextmanager
def connect(scheduler: str) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler`` (an address, or ``local:N``), closed
    (and a local cluster stopped) when the block ends."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise OptionError(
            "--scheduler needs dask.distributed: pip install 'dask[distributed]'"
        ) from None
    if scheduler.startswith("local:"):
        try:
            n = int(scheduler.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise OptionError(f"--scheduler {scheduler}: give local:N with N >= 1 workers")
        threads = max(1, (os.cpu_count() or 1) // n)
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=threads, processes=True, dashboard_address=None
        )
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError) as exc:
        raise OptionError(
            f"--scheduler {scheduler}: no dask scheduler answers there ({exc}); start one "
            "with 'dask scheduler' or use --scheduler local:N"
        ) from None
    try:
        yield client
    finally:
        client.close()


def run_on_cluster(
    scheduler: str,
    payloads: list[dict[str, Any]],
    finished: Callable[[dict[str, Any]], None],
) -> None:
    """Every scene of ``payloads`` as a task; ``finished(record)`` as each completes."""
    from distributed import as_completed

    from batch.worker import run_scene

    with connect(scheduler) as client:
        futures = client.map(
            run_scene,
            payloads,
            key=[f"pansharp-scene-{p['name']}-{p['fingerprint'][:12]}" for p in payloads],
            retries=RETRIES,
            pure=False,
        )
        try:
            for fut in as_completed(futures):
                finished(fut.result())
        except BaseException:
            client.cancel(futures)
            raise


def rows_map(client: Any) -> Callable[..., Iterator[Any]]:
    """A :data:`tiling.rows.RowsMap` on ``client``'s workers (see the module docstring)."""

    def run(fn: Callable[..., Any], tasks: list[Any], prepared: Any) -> Iterator[Any]:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        ahead = IN_FLIGHT_PER_WORKER * workers
        shared = client.scatter(prepared, broadcast=True)
        futures: list[Any] = []
        try:
            for k in range(len(tasks)):
                while len(futures) < min(len(tasks), k + ahead) and len(futures) < len(tasks):
                    t = tasks[len(futures)]
                    futures.append(client.submit(fn, t, shared, retries=RETRIES, pure=False))
                yield futures[k].result()
                futures[k] = None  # the client holds one finished strip at a time
        finally:
            client.cancel([f for f in futures if f is not None])

    return run
