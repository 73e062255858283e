"""Every bad input: one line on stderr naming the file or flag, non-zero exit, nothing at OUT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from tests.cli import one_line_error
from tests.cli import run_cli as _run_cli
from tests.conftest import write_raster


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    if args[0] == "fuse" and "-m" not in args:
        args = [*args, "-m", "brovey"]  # the method is not what these tests are about
    return _run_cli(args, capsys)


assert_one_line_error = one_line_error


def leftovers(folder: Path, name: str) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(name) or p.name.startswith("." + name)]


@pytest.fixture
def scene(make_scene):
    return make_scene(pan_shape=(96, 96), ratio=4, bands=4)


def test_missing_file(scene, tmp_path, capsys):
    out = tmp_path / "out.tif"
    code, _, err = run_cli(["fuse", scene.pan, str(tmp_path / "nope.tif"), "-o", str(out)], capsys)
    assert_one_line_error(code, err, "nope.tif", "not found")
    assert not out.exists()


def test_not_a_raster(scene, tmp_path, capsys):
    bad = tmp_path / "notes.tif"
    bad.write_text("hello, I am not a GeoTIFF\n")
    out = tmp_path / "out.tif"
    code, _, err = run_cli(["fuse", str(bad), *scene.ms, "-o", str(out)], capsys)
    assert_one_line_error(code, err, "notes.tif", "not a raster")
    assert not out.exists()


def test_truncated_tiff(make_scene, tmp_path, capsys):
    s = make_scene(pan_shape=(256, 256), ratio=4, bands=4, name="trunc")
    data = Path(s.pan).read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.tif"
    code, _, err = run_cli(["fuse", str(cut), *s.ms, "-o", str(out)], capsys)
    assert_one_line_error(code, err, "cut.tif")
    assert not leftovers(tmp_path, "out.tif")


def test_pan_with_several_bands(scene, tmp_path, capsys):
    out = tmp_path / "out.tif"
    code, _, err = run_cli(["fuse", scene.ms[0], *scene.ms, "-o", str(out)], capsys)
    assert_one_line_error(code, err, "4 bands", "single band")
    assert not out.exists()


def _write(path: Path, arr: np.ndarray, transform: Affine) -> None:
    write_raster(path, arr.astype("uint16"), transform)


def test_no_overlap(scene, tmp_path, capsys):
    far = tmp_path / "far.tif"
    _write(far, np.ones((4, 24, 24)), Affine(2.0, 0, 900000.0, 0, -2.0, 5000000.0))
    out = tmp_path / "out.tif"
    code, _, err = run_cli(["fuse", scene.pan, str(far), "-o", str(out)], capsys)
    assert_one_line_error(code, err, "do not overlap")
    assert not out.exists()


def test_non_integer_ratio(scene, tmp_path, capsys):
    odd = tmp_path / "odd.tif"
    _write(odd, np.ones((4, 40, 40)), Affine(1.25, 0, 500000.0, 0, -1.25, 5000000.0))
    out = tmp_path / "out.tif"
    code, _, err = run_cli(["fuse", scene.pan, str(odd), "-o", str(out)], capsys)
    assert_one_line_error(code, err, "not an integer")
    assert not out.exists()


def test_ungeoreferenced_needs_ratio(make_scene, tmp_path, capsys):
    s = make_scene(pan_shape=(64, 64), ratio=2, georeferenced=False, name="nogeo")
    out = tmp_path / "out.tif"
    # pansharp reports the missing georeference itself: rasterio's warning is silenced,
    # without --ratio (the one error line asks for it) ...
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code, _, err = run_cli(["fuse", s.pan, *s.ms, "-o", str(out), "-m", "brovey"], capsys)
    assert_one_line_error(code, err, "--ratio")
    assert not out.exists()
    assert not [w for w in seen if issubclass(w.category, rasterio.errors.NotGeoreferencedWarning)]
    # ... and with --ratio, where the missing georeference is announced
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code, _, err = run_cli(
            ["fuse", s.pan, *s.ms, "-o", str(out), "-m", "brovey", "--ratio", "2", "-q"], capsys
        )
    assert code == 0, err
    assert out.exists()
    assert not [w for w in seen if issubclass(w.category, rasterio.errors.NotGeoreferencedWarning)]


def test_wrong_number_of_weights(scene, tmp_path, capsys):
    out = tmp_path / "out.tif"
    code, _, err = run_cli(
        ["fuse", scene.pan, *scene.ms, "-o", str(out), "-m", "brovey", "--band-weights", "1,2"],
        capsys,
    )
    assert_one_line_error(code, err, "--band-weights", "4")
    assert not out.exists()


def test_unknown_method_lists_valid_names(scene, tmp_path, capsys):
    out = tmp_path / "out.tif"
    code, _, err = run_cli(["fuse", scene.pan, *scene.ms, "-o", str(out), "-m", "magic"], capsys)
    assert_one_line_error(code, err, "magic", "brovey", "-m")
    assert not out.exists()


def test_unknown_sensor_lists_valid_names(scene, tmp_path, capsys):
    out = tmp_path / "out.tif"
    code, _, err = run_cli(
        ["fuse", scene.pan, *scene.ms, "-o", str(out), "--sensor", "hubble"], capsys
    )
    assert_one_line_error(code, err, "hubble", "worldview2", "--sensor")
    assert not out.exists()


def test_output_folder_missing(scene, tmp_path, capsys):
    out = tmp_path / "no" / "such" / "out.tif"
    code, _, err = run_cli(["fuse", scene.pan, *scene.ms, "-o", str(out)], capsys)
    assert_one_line_error(code, err, "does not exist", "-o")
    assert not out.exists()


def test_output_folder_not_writable(scene, tmp_path, capsys):
    if os.geteuid() == 0:
        folder = Path("/sys")  # root writes anywhere else; sysfs refuses new files
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
    code, _, err = run_cli(["fuse", scene.pan, *scene.ms, "-o", str(folder / "o.tif")], capsys)
    assert_one_line_error(code, err, "not writable", "-o")


def test_existing_output_needs_overwrite(scene, tmp_path, capsys):
    out = tmp_path / "out.tif"
    out.write_bytes(b"precious")
    code, _, err = run_cli(["fuse", scene.pan, *scene.ms, "-o", str(out), "-m", "exp"], capsys)
    assert_one_line_error(code, err, "--overwrite")
    assert out.read_bytes() == b"precious"
    code, _, err = run_cli(
        ["fuse", scene.pan, *scene.ms, "-o", str(out), "-m", "exp", "--overwrite", "-q"], capsys
    )
    assert code == 0, err
    with rasterio.open(out) as ds:
        assert ds.count == 4


def test_bad_creation_option_and_usage_error(scene, tmp_path, capsys):
    out = tmp_path / "out.tif"
    code, _, err = run_cli(["fuse", scene.pan, *scene.ms, "-o", str(out), "--co", "JUNK"], capsys)
    assert_one_line_error(code, err, "--co")
    code, _, err = run_cli(["fuse", scene.pan, *scene.ms], capsys)
    assert_one_line_error(code, err, "--output")
    assert not out.exists()


@pytest.mark.parametrize(
    ("tile", "method"), [("64", "exp"), ("512", "mtf-glp")], ids=["gdal-writer", "streaming-writer"]
)
def test_sigint_leaves_nothing(make_scene, tmp_path, tile, method):
    s = make_scene(pan_shape=(2048, 2048), ratio=4, bands=4, name="big")
    out = tmp_path / "out.tif"
    cli = [sys.executable, "-m", "pansharp_cli"]  # this checkout's code, not a PATH one
    cmd = [*cli, "fuse", s.pan, *s.ms, "-o", str(out), "-m", method, "--tile", tile]
    proc = subprocess.Popen([*cmd, "--threads", "1", "-q"], stderr=subprocess.PIPE, text=True)
    # interrupt while the output is being written: once the writer's scratch space beside
    # OUT exists (not the destination check's probe file), a moment later
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        scratch = [p for p in leftovers(tmp_path, "out.tif") if not p.name.endswith(".probe")]
        if scratch:
            break
        time.sleep(0.01)
    time.sleep(0.2)
    assert proc.poll() is None, "run finished before it could be interrupted; enlarge the scene"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err
    assert not leftovers(tmp_path, "out.tif"), "partial output or temp folder left behind"


def test_fuse_json_summary(scene, tmp_path, capsys):
    import json

    out = tmp_path / "out.tif"
    code, stdout, err = run_cli(
        ["fuse", scene.pan, *scene.ms, "-o", str(out), "-m", "brovey", "--json", "-q"], capsys
    )
    assert code == 0, err
    d = json.loads(stdout)
    assert d["width"] == 96 and d["bands"] == 4 and d["method"] == "brovey"
    assert sys.executable  # the summary is machine-readable: parsed above
