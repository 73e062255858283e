"""The CLI's start-up: the library without boto3 when every path is local
(pansharp_cli.startup), imports without the cyclic GC (pansharp_cli.__main__)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

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


GC_PROBE = """
import gc, sys
import pansharp_cli.__main__ as entry
import pansharp_cli.progress as progress
seen = {}
real = progress.freeze_imports
def spy():
    seen["modules"] = len(sys.modules)
    seen["during_imports"] = gc.isenabled()
    real()
    seen["during_work"] = gc.isenabled()
progress.freeze_imports = spy
sys.argv = ["pansharp", "fuse", *sys.argv[1:]]
try:
    entry.main()
except SystemExit as exc:
    seen["exit"] = exc.code
print(seen["during_imports"], seen["during_work"], gc.isenabled(), seen["modules"] > 500)
"""


def test_process_imports_without_the_gc_and_works_with_it(make_scene, tmp_path):
    """The process entry disables the cyclic GC for the imports; the work gets it back
    (frozen imports, collector on), and so does anyone calling the entry in-process."""
    scene = make_scene(pan_shape=(64, 72), ratio=4, bands=3, seed=5)
    out = tmp_path / "o.tif"
    got = run_python(GC_PROBE, scene.pan, *scene.ms, "-m", "brovey", "-o", str(out), "-q")
    assert got.split() == ["False", "True", "True", "True"], got
    assert out.exists()


def test_python_dash_m_runs_the_cli():
    res = subprocess.run(
        [sys.executable, "-m", "pansharp_cli", "sensors", "--json"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert '"landsat8"' in res.stdout
