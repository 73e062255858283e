"""What a command imports before its long work, and what it can skip.

rasterio imports boto3 when it is installed (``rasterio.session``), only to build AWS
sessions for ``s3://`` paths: 0.22 s of every run's start on this project's machine
(``python -X importtime``), paid again by each call of a shell loop over hundreds of
local scenes. When every path a command was given is a local file, the library is
imported with boto3 out of reach; rasterio then treats the run as it does without boto3
(local files never use it). Remote paths keep the full import.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

_REMOTE = re.compile(r"^([a-z0-9+.-]+://|/vsi)", re.IGNORECASE)


def all_local(paths: Iterable[str | None]) -> bool:
    """True when no path is a URL (``s3://``, ``https://``, ``zip+s3://``) or a GDAL
    virtual file system path (``/vsis3/``, ``/vsicurl/``...)."""
    return not any(p is not None and _REMOTE.match(str(p)) for p in paths)


@contextmanager
def library_imports(paths: Iterable[str | None]) -> Iterator[None]:
    """Import the library inside this block: without boto3 when ``paths`` are all local.

    ``sys.modules["boto3"] = None`` makes ``import boto3`` fail for the block's duration
    only; afterwards boto3 imports normally again for whoever needs it.
    """
    if "boto3" in sys.modules or not all_local(list(paths)):
        yield
        return
    sys.modules["boto3"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get("boto3", 0) is None:
            del sys.modules["boto3"]
