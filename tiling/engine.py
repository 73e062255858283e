"""A bounded, parallel map over tiles: read + compute in worker threads, consume in order of
completion in the calling thread.

Why threads: rasterio releases the GIL while GDAL reads and numpy/BLAS release it in
the heavy array work, so worker threads keep every core busy without copying tiles
between processes. Why bounded: at most ``max_inflight`` tiles exist at once (read,
being computed, or waiting to be written), so memory is independent of the scene size
while reading, computing and writing overlap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Progress = Callable[[str, int, int], None]


def default_threads() -> int:
    """All cores by default, as GDAL's NUM_THREADS=ALL_CPUS."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def parallel_map(
    items: Iterable[T],
    work: Callable[[T], R],
    consume: Callable[[T, R], None],
    threads: int,
    max_inflight: int | None = None,
    ordered: bool = False,
) -> None:
    """Run ``work(item)`` on a thread pool and ``consume(item, result)`` in this thread.

    ``consume`` sees the results in order of completion, or with ``ordered`` in the order
    of ``items``: a result that is ready early waits, at most ``max_inflight`` of them
    (then no new item starts until the earliest is done; counted against the work in
    flight, they would leave a worker idle behind a slow tile). Ordered is for sums of
    floating-point partials: added in completion order they change in their last bits from
    run to run with more than one thread, and so may a coefficient fitted from them and a
    pixel rounded from that (GSA on 256 x 256, 4 threads: the fit's sums differed in 10 of
    10 runs); in order, every thread count gives the bits of ``--threads 1``.

    The first exception (from a worker or from ``consume``) cancels what has not
    started and is re-raised; KeyboardInterrupt likewise stops the run promptly.
    """
    threads = max(1, threads)
    # Parallelism comes from the tiles; BLAS threads on top of them oversubscribe the
    # cores (measured on an 8000^2 Brovey, 2 cores: 40 s -> 11 s with 2 workers; a
    # single worker thread with multi-threaded BLAS was slower still, 48 s).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        _parallel_map(items, work, consume, threads, max_inflight, ordered)


def _parallel_map(
    items: Iterable[T],
    work: Callable[[T], R],
    consume: Callable[[T, R], None],
    threads: int,
    max_inflight: int | None,
    ordered: bool,
) -> None:
    limit = max_inflight or threads * 2
    pending: dict[Future, tuple[int, T]] = {}
    ready: dict[int, tuple[T, R]] = {}  # ordered: finished, waiting for the earlier ones
    turn = 0  # ordered: index of the next item to consume
    it = enumerate(items)
    pool = ThreadPoolExecutor(
        max_workers=threads,
        thread_name_prefix="pansharp-tile",
        initializer=_enter_gdal_env,
        initargs=(_current_gdal_options(),),
    )
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < limit and len(ready) < limit:
                try:
                    index, item = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending[pool.submit(work, item)] = (index, item)
            if not pending:
                break
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED, timeout=0.5)
            for fut in done:
                index, item = pending.pop(fut)
                if not ordered:
                    consume(item, fut.result())
                    continue
                ready[index] = (item, fut.result())
                while turn in ready:
                    consume(*ready.pop(turn))
                    turn += 1
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _current_gdal_options() -> dict[str, Any]:
    try:
        import rasterio.env

        return dict(rasterio.env.getenv()) if rasterio.env.hasenv() else {}
    except Exception:
        return {}


def _enter_gdal_env(options: dict[str, Any]) -> None:
    """Give each worker thread its own GDAL environment for its whole life.

    rasterio's environment is thread-local; a dataset opened in a thread without one
    creates a private one and tears it down on close, which fails when the dataset is
    closed from another thread. With a thread-wide environment, datasets own none.
    """
    import rasterio

    rasterio.Env(**options).__enter__()


def sum_partials(acc: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """Add a tile's partial sums into the accumulator (keys are summed elementwise)."""
    for k, v in part.items():
        acc[k] = v if k not in acc else acc[k] + v
    return acc
