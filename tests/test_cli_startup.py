"""The CLI imports the library without boto3 when every path is local (pansharp_cli.startup)."""

from __future__ import annotations

import importlib.util

import pytest

from pansharp_cli.startup import all_local
from tests.probe import run_python

PROBE = (
    "import sys\n"
    "from pansharp_cli.startup import library_imports\n"
    "with library_imports(sys.argv[1:]):\n"
    "    import rasterio, tiling.fuse\n"
    "print('boto3' in sys.modules)\n"
    "import boto3\n"  # afterwards boto3 imports normally for whoever needs it
    "print('ok')\n"
)


@pytest.mark.parametrize(
    ("paths", "local"),
    [
        (["pan.tif", "/data/ms.tif", None], True),
        (["C:/scenes/pan.tif"], True),
        (["s3://bucket/pan.tif"], False),
        (["pan.tif", "zip+https://host/a.zip!/ms.tif"], False),
        (["/vsis3/bucket/pan.tif"], False),
        (["/VSICURL/http://host/x.tif"], False),
    ],
)
def test_remote_paths_are_recognised(paths, local):
    assert all_local(paths) is local


@pytest.mark.skipif(importlib.util.find_spec("boto3") is None, reason="boto3 not installed")
def test_local_runs_skip_boto3_remote_runs_keep_it():
    local = run_python(PROBE, "pan.tif", "ms.tif").split()
    assert local == ["False", "ok"]
    remote = run_python(PROBE, "s3://bucket/pan.tif", "ms.tif").split()
    assert remote == ["True", "ok"]
