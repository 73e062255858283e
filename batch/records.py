"""What a batch run leaves beside its outputs: one record per scene, a state file, a summary.

In OUTDIR:

- ``records/NAME.json``: the scene's record (:func:`batch.worker.run_scene`): inputs,
  options, method, weights, fingerprint, timings and the ``fuse`` summary, or the
  one-line error and its exit code; ``status`` is ``ok``, ``failed`` or ``skipped``.
- ``batch_state.json``: ``{"scenes": {NAME: {"status", "fingerprint", "out"}}}``,
  rewritten after every scene, so an interrupted run says what it finished.
- ``batch_summary.json`` and ``batch_summary.csv``: the counts and one row per scene.

Every file is written beside its name and renamed into place, so a reader (or a
rerun after a crash) never sees half of one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

RECORDS = "records"
STATE = "batch_state.json"
SUMMARY_JSON = "batch_summary.json"
SUMMARY_CSV = "batch_summary.csv"
CSV_COLUMNS = ("name", "status", "out", "seconds", "exit_code", "error")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as any new file (mkstemp makes it 0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record_path(outdir: Path, name: str) -> Path:
    return outdir / RECORDS / f"{name}.json"


def write_record(outdir: Path, record: dict[str, Any]) -> Path:
    path = record_path(outdir, record["name"])
    write_atomic(path, json.dumps(record, indent=1, allow_nan=False) + "\n")
    return path


def read_record(outdir: Path, name: str) -> dict[str, Any] | None:
    try:
        return json.loads(record_path(outdir, name).read_text())
    except (OSError, ValueError):
        return None


def write_state(outdir: Path, records: dict[str, dict[str, Any]]) -> None:
    scenes = {
        n: {"status": r["status"], "fingerprint": r.get("fingerprint"), "out": r.get("out")}
        for n, r in records.items()
    }
    write_atomic(outdir / STATE, json.dumps({"scenes": scenes}, indent=1) + "\n")


def summary_of(records: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Counts and one row per scene (the JSON summary)."""
    count = {s: sum(r["status"] == s for r in records) for s in ("ok", "failed", "skipped")}
    rows = [{k: r.get(k) for k in CSV_COLUMNS} for r in records]
    return {"scenes": len(records), **count, "seconds": round(seconds, 3), "rows": rows}


def write_summary(outdir: Path, summary: dict[str, Any]) -> None:
    write_atomic(outdir / SUMMARY_JSON, json.dumps(summary, indent=1, allow_nan=False) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in summary["rows"]:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS})
    write_atomic(outdir / SUMMARY_CSV, buf.getvalue())
