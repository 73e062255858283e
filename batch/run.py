"""A batch run: every scene fused once, each in isolation, resumable.

For each scene (:mod:`batch.scenes`) the run builds the ``fuse`` job (the run's options,
the manifest row's over them, the fingerprint as an output tag) and decides:

- **skip** when the output exists and carries the scene's fingerprint now
  (:mod:`batch.fingerprint`): complete (outputs appear only by an atomic rename) and
  made from the same inputs and options; ``force`` redoes it;
- **run** otherwise, in a worker (:func:`batch.worker.run_scene`), replacing an older
  output of a batch (one with a fingerprint tag); a file that is not a batch output is
  only replaced with ``--overwrite``, as ``fuse`` would.

Workers: ``jobs`` local processes (``spawn``: no state shared with this process), each
with its share of the cores, or the workers of a dask.distributed cluster
(``scheduler``: :mod:`batch.cluster`). A local worker that dies (killed, out of memory)
takes only the scenes it held: the pool is restarted and each of them tried once more;
dask reschedules a dead worker's scene on another by itself. Records come back to this
process, which writes them, the state file and the summary (:mod:`batch.records`).

Interruption (SIGINT, SIGTERM): the workers are stopped, temporary folders of dead
writers are swept (:func:`raster.destination.remove_stale`), no output is half-written
(every output is renamed into place complete), and the rerun resumes.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch.fingerprint import TAG, fingerprint, output_fingerprint
from batch.records import summary_of, write_record, write_state, write_summary
from batch.scenes import SceneItem
from batch.worker import init_worker, run_scene
from errors import OptionError
from raster.destination import remove_stale
from tiling.fuse import FuseOptions
from tiling.job import FuseJob

#: exit code of a run in which some scenes failed (the others succeeded or were kept)
EXIT_SOME_FAILED = 8
#: times a local scene is started again after its worker process died
LOCAL_RETRIES = 1

Progress = Callable[[dict[str, Any]], None]


@dataclass
class BatchResult:
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    outdir: Path

    @property
    def failed(self) -> int:
        return int(self.summary["failed"])

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.failed else 0


def plan_jobs(
    items: list[SceneItem], opts: FuseOptions, version: str
) -> list[tuple[SceneItem, FuseJob, str]]:
    """(scene, job, fingerprint) for every scene: the run's options with the row's."""
    fields = {f.name for f in dataclasses.fields(FuseOptions)}
    out = []
    for item in items:
        bad = set(item.options) - fields
        if bad:
            raise OptionError(f"scene {item.name}: unknown option(s) {', '.join(sorted(bad))}")
        row = dataclasses.replace(opts, **item.options)
        job = FuseJob(item.pan, item.ms, item.out, row)
        fp = fingerprint(job, version)
        job.options.tags = {**job.options.tags, TAG: fp}
        out.append((item, job, fp))
    return out


def run_batch(
    items: list[SceneItem],
    opts: FuseOptions,
    outdir: str | Path,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> BatchResult:
    """Run every scene (see the module docstring); returns the records and summary."""
    from models.deep.card import pansharp_version

    if jobs < 1:
        raise OptionError(f"--jobs {jobs}: give 1 or more worker processes")
    t0 = time.time()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    planned = plan_jobs(items, opts, pansharp_version())
    records: dict[str, dict[str, Any]] = {}
    todo: list[dict[str, Any]] = []
    for item, job, fp in planned:
        existing = output_fingerprint(job.out)
        if existing == fp and not force:
            records[item.name] = {
                "name": item.name, "status": "skipped", "out": job.out, "fingerprint": fp,
                "exit_code": 0, "error": None, "seconds": 0.0,
                "reason": "output complete, same inputs and options",
            }  # fmt: skip
            continue
        if existing is not None:  # a batch output, older or forced: replace it
            job.options.overwrite = True
        todo.append({"name": item.name, "job": job.to_dict(), "fingerprint": fp})
    state = {"done": 0, "failed": 0, "skipped": len(records), "total": len(planned)}
    report = progress or (lambda info: None)
    report({"event": "start", **state})

    def finished(record: dict[str, Any]) -> None:
        records[record["name"]] = record
        write_record(out, record)
        write_state(out, records)
        state["done" if record["status"] == "ok" else "failed"] += 1
        report({"event": "scene", "record": record, **state})

    try:
        if todo:
            if scheduler:
                from batch.cluster import run_on_cluster

                run_on_cluster(scheduler, todo, finished)
            else:
                _run_local(todo, jobs, opts.threads, finished)
    finally:  # temporary folders of writers that died (their locks are free now)
        for folder in sorted({Path(job.out).parent for _, job, _ in planned}):
            if folder.is_dir():
                remove_stale(folder)
    ordered = [records[item.name] for item, _, _ in planned if item.name in records]
    summary = summary_of(ordered, time.time() - t0)
    write_state(out, records)
    write_summary(out, summary)
    report({"event": "done", **state})
    return BatchResult(ordered, summary, out)


def worker_threads(jobs: int, threads: int | None) -> int:
    """Each local worker's threads: ``--threads`` if given, else its share of the cores."""
    if threads:
        return threads
    return max(1, (os.cpu_count() or 1) // jobs)


def _run_local(
    todo: list[dict[str, Any]],
    jobs: int,
    threads: int | None,
    finished: Callable[[dict[str, Any]], None],
) -> None:
    """``todo`` on ``jobs`` spawned processes; a scene whose worker died is retried."""
    ctx = multiprocessing.get_context("spawn")
    tries = {p["name"]: 0 for p in todo}
    pending = list(todo)
    n_threads = worker_threads(jobs, threads)
    while pending:
        pool = cf.ProcessPoolExecutor(
            max_workers=min(jobs, len(pending)),
            mp_context=ctx,
            initializer=init_worker,
            initargs=(n_threads,),
        )
        futures = {pool.submit(run_scene, p): p for p in pending}
        pending = []
        try:
            for fut in cf.as_completed(futures):
                payload = futures[fut]
                try:
                    finished(fut.result())
                except cf.process.BrokenProcessPool:
                    tries[payload["name"]] += 1
                    if tries[payload["name"]] > LOCAL_RETRIES:
                        finished(_died(payload))
                    else:
                        pending.append(payload)
        except BaseException:
            _stop(pool)
            raise
        pool.shutdown(wait=True)


def _died(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": payload["name"],
        "status": "failed",
        "out": payload["job"]["out"],
        "fingerprint": payload["fingerprint"],
        "exit_code": 1,
        "error": f"the worker process died {LOCAL_RETRIES + 1} times on this scene "
        "(killed, or out of memory: try fewer --jobs)",
        "seconds": None,
    }


def _stop(pool: cf.ProcessPoolExecutor) -> None:
    """Stop the workers now (an interruption): their partial outputs are hidden
    temporary folders, swept once their locks are free."""
    procs = list(getattr(pool, "_processes", {}).values())
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=10)
    pool.shutdown(wait=False, cancel_futures=True)
