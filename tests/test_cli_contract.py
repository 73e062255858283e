"""The process contract, through a real ``pansharp`` process with pipes (not a terminal).

In-process runs (tests/cli.py) do not see what only a real process shows: rich's
non-terminal rendering, Python's default warning display, what is imported.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import needs_shared
from tests.probe import run_python

CLI = [sys.executable, "-m", "pansharp_cli"]  # this checkout's code, not a PATH one
WV2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "spacenet6_wv2_tiles"


def pansharp(*args: str) -> subprocess.CompletedProcess[str]:
    """``pansharp ARGS`` as its own process, stdout and stderr on pipes."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


def _missing_file(make_scene, tmp_path):
    s = make_scene(pan_shape=(64, 64))
    return [s.pan, str(tmp_path / "nope.tif"), "-m", "brovey"], 3, "nope.tif"


def _ungeoreferenced(make_scene, tmp_path):
    s = make_scene(pan_shape=(64, 64), ratio=2, georeferenced=False, name="nogeo")
    return [s.pan, *s.ms, "-m", "brovey"], 4, "--ratio"


def _no_overlap(make_scene, tmp_path):
    s = make_scene(pan_shape=(64, 64), offset=100000.0, name="far")  # MS 50 km away
    return [s.pan, *s.ms, "-m", "brovey"], 4, "overlap"


def _unknown_method(make_scene, tmp_path):
    s = make_scene(pan_shape=(64, 64))
    return [s.pan, *s.ms, "-m", "magic"], 2, "magic"


def _no_fitting_weights(make_scene, tmp_path):
    s = make_scene(pan_shape=(64, 64), ratio=4)
    return [s.pan, *s.ms, "-m", "fusionnet"], 6, "--weights"


def _weights_with_classical(make_scene, tmp_path):
    s = make_scene(pan_shape=(64, 64))
    return [s.pan, *s.ms, "-m", "gsa", "--weights", "w.safetensors"], 2, "--weights"


@pytest.mark.parametrize(
    "build",
    [
        _missing_file,
        _ungeoreferenced,
        _no_overlap,
        _unknown_method,
        _no_fitting_weights,
        _weights_with_classical,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_every_error_is_exactly_one_line_on_a_pipe(make_scene, tmp_path, build):
    """Nothing but the error line: no empty line from the progress bar, no rasterio
    NotGeoreferencedWarning ahead of it, nothing on stdout."""
    args, code, needle = build(make_scene, tmp_path)
    res = pansharp("fuse", *args, "-o", str(tmp_path / "out.tif"))
    assert res.returncode == code, res.stderr
    assert res.stderr.startswith("pansharp: error: ") and res.stderr.count("\n") == 1, repr(
        res.stderr
    )
    assert res.stderr.endswith("\n") and needle in res.stderr
    assert res.stdout == ""
    assert not (tmp_path / "out.tif").exists()


def test_ungeoreferenced_run_with_ratio_shows_no_warning(make_scene, tmp_path):
    """A successful run on a pipe: the final bars and the summary, no warning, no empty
    line (rich's extra line on a non-terminal stream is not written either)."""
    s = make_scene(pan_shape=(64, 64), ratio=2, georeferenced=False, name="nogeo")
    out = tmp_path / "out.tif"
    res = pansharp("fuse", s.pan, *s.ms, "-m", "brovey", "--ratio", "2", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert out.exists()
    assert "Warning" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert lines and all(ln.strip() for ln in lines), repr(res.stderr)
    assert lines[-1].startswith(f"{out}: 64x64x4"), lines[-1]


def test_version_from_the_package_metadata():
    res = pansharp("--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"pansharp {version('pansharp')}\n"
    assert res.stderr == ""


REFUSAL_PROBE = (
    "import sys\n"
    "from pansharp_cli.main import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    print(exc.code, 'torch' in sys.modules)\n"
)


def _refused_without_torch(*args: str) -> None:
    got = run_python(REFUSAL_PROBE, "fuse", *args).split()
    assert got == ["6", "False"], got


def test_deep_model_without_fitting_weights_is_refused_before_torch(make_scene, tmp_path):
    """4 bands at ratio 4: no shipped weights for the detected (generic) sensor, and
    the landsat8 ones are for ratio 2; both decided from the headers, torch never
    imported (it costs ~3 s and ~280 MB per refusal)."""
    s = make_scene(pan_shape=(64, 64), ratio=4)
    out = str(tmp_path / "out.tif")
    _refused_without_torch(s.pan, *s.ms, "-m", "fusionnet", "-o", out)
    _refused_without_torch(s.pan, *s.ms, "-m", "fusionnet", "--sensor", "landsat8", "-o", out)


@needs_shared("spacenet6_wv2_tiles")
def test_worldview2_pair_with_fusionnet_is_refused_before_torch(tmp_path):
    out = str(tmp_path / "out.tif")
    _refused_without_torch(
        str(WV2 / "pan1.tif"), str(WV2 / "ms1.tif"), "-m", "fusionnet", "-o", out
    )


def test_evaluate_failure_is_one_line_after_the_tables(make_scene) -> None:
    """Some methods fail mid-run (BDSD-PC: too few estimation pixels at reduced
    resolution): the tables of the others go to stdout, stderr holds the one error line
    (the progress bar, left with an exception, is erased, not printed on the pipe)."""
    s = make_scene(pan_shape=(400, 400), ratio=4, name="small")  # 100^2 MS, 25^2 reduced
    r = pansharp("evaluate", s.pan, *s.ms, "-m", "gsa", "-m", "bdsd-pc", "--protocol", "reduced")
    assert r.returncode == 7
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("pansharp: error:"), r.stderr
    assert "bdsd-pc" in lines[0]
    assert "gsa" in r.stdout
