"""One scene of a batch in a worker process: fused, or turned into an error record.

:func:`run_scene` is what a local worker process or a dask worker runs. It never
raises for a scene's fault: a :class:`errors.PansharpError` (a truncated file, no
overlap, weights that do not fit) becomes a record with the one line ``pansharp fuse``
would print and its exit code; any other exception a record with exit code 1. Only an
interruption propagates. The process keeps what does not depend on the scene between
scenes (the weights' tensors: :func:`models.deep.weights.cached_tensors`).
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from typing import Any

from batch.fingerprint import output_fingerprint
from errors import PansharpError
from tiling.job import FuseJob, run_job
from tiling.process import apply_process_settings

_STARTED = {"done": False}


def init_worker(threads: int | None = None) -> None:
    """A local worker process's start: pansharp's process settings before torch loads,
    and its share of the cores for torch's and the engine's threads."""
    apply_process_settings()
    _STARTED["done"] = True
    if threads:
        os.environ["PANSHARP_WORKER_THREADS"] = str(threads)


def _worker_threads() -> int | None:
    """Threads for a scene: a local worker's share, a dask worker's ``nthreads``."""
    env = os.environ.get("PANSHARP_WORKER_THREADS")
    if env:
        return int(env)
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def run_scene(payload: dict[str, Any]) -> dict[str, Any]:
    """Fuse one scene (``payload``: ``name``, ``job`` as :meth:`FuseJob.to_dict`,
    ``fingerprint``) and return its record (:mod:`batch.records`)."""
    if not _STARTED["done"]:  # a dask worker: no initializer ran
        apply_process_settings()
        _STARTED["done"] = True
    start = time.time()
    record: dict[str, Any] = {
        "name": payload["name"],
        "pan": payload["job"]["pan"],
        "ms": payload["job"]["ms"],
        "out": payload["job"]["out"],
        "options": payload["job"]["options"],
        "method": payload["job"]["options"].get("method"),
        "fingerprint": payload["fingerprint"],
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": start,
    }
    try:
        job = FuseJob.from_dict(payload["job"])
        if not job.options.overwrite and output_fingerprint(job.out) == payload["fingerprint"]:
            # a retried scene whose first worker died after renaming its output into
            # place (outputs appear only complete) but before its record came back
            end = time.time()
            record.update(status="ok", exit_code=0, error=None, finished=end,
                          seconds=round(end - start, 3), reused="output of an earlier attempt",
                          weights=_output_tags(job.out).get("PANSHARP_WEIGHTS"))  # fmt: skip
            return record
        if job.options.threads is None:
            job.options.threads = _worker_threads()
        result = run_job(job)
        record.update(
            status="ok",
            exit_code=0,
            error=None,
            summary=result.summary(),
            weights=_output_tags(job.out).get("PANSHARP_WEIGHTS"),
        )
        if output_fingerprint(job.out) != payload["fingerprint"]:
            record.update(status="failed", exit_code=1, error="output lacks its fingerprint")
    except PansharpError as exc:
        record.update(status="failed", exit_code=exc.exit_code, error=" ".join(str(exc).split()))
    except Exception as exc:  # a bug, not the scene's fault: still only this scene's record
        line = " ".join(f"{type(exc).__name__}: {exc}".split())
        record.update(
            status="failed",
            exit_code=1,
            error=f"internal error: {line}",
            traceback=traceback.format_exc(limit=8),
        )
    end = time.time()
    record.update(finished=end, seconds=round(end - start, 3))
    return record


def _output_tags(path: str) -> dict[str, str]:
    import rasterio

    with rasterio.open(path) as ds:
        return dict(ds.tags())
