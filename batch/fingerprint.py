"""What makes an output the one its scene and options give: a fingerprint.

``sha256`` of a JSON document holding the pansharp version, every ``fuse`` option that
can change a pixel or a tag (all of them but ``overwrite``, ``threads`` and ``tags``:
threads do not change the output, tested in tests/test_race_threads.py) and, for each
input file (PAN, MS, an explicit ``--weights``), its resolved path, size and
modification time in nanoseconds. A file edited or replaced gets a new size or time, so
its scene is redone; the same file reached by another spelling of its path is the
same. The fingerprint is written into the output's tags (:data:`TAG`) and the run's
state file: a rerun keeps an output only when both agree with the scene's fingerprint
now (:func:`output_fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tiling.job import FuseJob

TAG = "PANSHARP_FINGERPRINT"
IGNORED_OPTIONS = ("overwrite", "threads", "tags")


def file_identity(path: str) -> list[object]:
    """[resolved path, size, mtime_ns], or [path, None, None] for a missing file."""
    try:
        st = os.stat(path)
    except OSError:
        return [str(path), None, None]
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


def fingerprint(job: FuseJob, version: str) -> str:
    """The hex fingerprint of ``job`` (see the module docstring)."""
    options = job.to_dict()["options"]
    for key in IGNORED_OPTIONS:
        options.pop(key, None)
    files = [job.pan, *job.ms] + ([job.options.weights] if job.options.weights else [])
    doc = {
        "pansharp": version,
        "options": options,
        "files": [file_identity(p) for p in files],
    }
    text = json.dumps(doc, sort_keys=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def output_fingerprint(path: str) -> str | None:
    """The fingerprint tag of an existing output, None if it has none or cannot be read
    (not a GeoTIFF, truncated: such a file is not a finished output)."""
    if not os.path.isfile(path):
        return None
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as ds:
            return ds.tags().get(TAG)
    except (RasterioError, OSError):
        return None
