"""``pansharp evaluate`` through ``pansharp_cli.main.main``: reports, modes, bad inputs.

Report layout is issue 3's JSON (scene / protocol / results, one entry per method and
scale) and its CSV twin; ``--reference`` and ``--fused`` score results made elsewhere
against whole-array computations of quality.md's indexes; every bad input is one line
on stderr and a non-zero exit.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from physics.sensors import get_sensor
from quality import FULL_KEYS, REDUCED_KEYS, full_resolution_indexes, reduced_resolution_indexes
from raster.radiometry import decide_bit_depth
from raster.scene import open_scene
from tests.cli import one_line_error, run_cli
from tests.test_evaluate_streaming import read_cube
from tiling.fuse import FuseOptions, build_context
from tiling.reader import TileReader
from tiling.windows import TileSpec

run = run_cli


@pytest.fixture
def scene(make_scene):
    # ratio 2: an 80 x 80 GT (reduced needs 73) and a 160 x 160 full-resolution grid
    return make_scene(pan_shape=(160, 160), ratio=2, bands=4, seed=5)


def write_tif(path: Path, arr: np.ndarray, like: str | None = None, dtype: str = "float64"):
    kw: dict = dict(driver="GTiff", count=arr.shape[0], height=arr.shape[1], width=arr.shape[2])
    if like:
        with rasterio.open(like) as ds:
            kw.update(transform=ds.transform, crs=ds.crs)
    with rasterio.open(path, "w", dtype=dtype, **kw) as ds:
        ds.write(arr.astype(dtype))
    return str(path)


# ------------------------------------------------------------------ reports
def test_json_csv_table_and_quicklook(scene, tmp_path, capsys):
    js, cs, png = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "q.png"
    args = ["evaluate", scene.pan, *scene.ms, "-m", "exp", "-m", "brovey", "--tile", "64"]
    args += ["--json", str(js), "--csv", str(cs), "--quicklook", str(png), "--quiet"]
    code, out, err = run(args, capsys)
    assert code == 0, err
    assert err == ""
    report = json.loads(js.read_text())
    assert list(report) == ["scene", "protocol", "results", "warnings"]
    assert report["warnings"] == []
    proto = report["protocol"]
    # the bit depth follows fuse's rules (raster.radiometry), and says which one decided
    depth = decide_bit_depth(open_scene(scene.pan, scene.ms), get_sensor("generic"), None)
    assert proto["ratio"] == 2 and proto["sensor"] == "generic"
    assert proto["bit_depth"] == depth.bits and proto["bit_depth_source"] == depth.source
    assert proto["sensor_source"] == "generic"
    assert report["scene"]["valid_area"]["left_out_px"] == 0
    assert proto["border_cut"] == [20, 21] and proto["block"] == 32
    assert report["scene"]["reduced_grid"] == [80, 80]
    assert report["scene"]["full_grid"] == [160, 160]
    got = [(r["method"], r["scale"]) for r in report["results"]]
    assert got == [("exp", "reduced"), ("exp", "full"), ("brovey", "reduced"), ("brovey", "full")]
    for r in report["results"]:
        keys = REDUCED_KEYS if r["scale"] == "reduced" else FULL_KEYS
        assert list(r) == ["method", "scale", *keys]
        assert all(isinstance(r[k], float) and np.isfinite(r[k]) for k in keys)
    exp_full = report["results"][1]
    assert exp_full["d_lambda"] == pytest.approx(0.0, abs=1e-12)  # EXP has EXP's spectra
    rows = list(csv.DictReader(io.StringIO(cs.read_text())))
    assert list(rows[0]) == ["method", "scale", *REDUCED_KEYS, *FULL_KEYS, "error"]
    assert [(r["method"], r["scale"]) for r in rows] == got
    for row, r in zip(rows, report["results"], strict=True):
        keys = REDUCED_KEYS if r["scale"] == "reduced" else FULL_KEYS
        other = FULL_KEYS if r["scale"] == "reduced" else REDUCED_KEYS
        assert all(float(row[k]) == r[k] for k in keys)
        assert all(row[k] == "" for k in (*other, "error"))
    # the table: ideal header row, both methods, best values marked
    assert "ideal" in out and "exp" in out and "brovey" in out
    assert "Reduced resolution" in out and "Full resolution" in out
    assert out.count(" *") >= len(REDUCED_KEYS) + len(FULL_KEYS)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_to_stdout(scene, capsys):
    code, out, err = run(
        ["evaluate", scene.pan, *scene.ms, "-m", "exp", "--protocol", "full", "--json", "-", "-q"],
        capsys,
    )
    assert code == 0, err
    report = json.loads(out)
    assert [(r["method"], r["scale"]) for r in report["results"]] == [("exp", "full")]


def test_failing_method_is_reported_and_exit_is_nonzero(scene, tmp_path, capsys, monkeypatch):
    from models.classical.brovey import Brovey

    def boom(self, tile, coeffs):
        raise ValueError("synthetic failure")

    monkeypatch.setattr(Brovey, "apply", boom)
    js = tmp_path / "r.json"
    code, out, err = run(
        ["evaluate", scene.pan, *scene.ms, "-m", "exp", "-m", "brovey", "--json", str(js), "-q"],
        capsys,
    )
    one_line_error(code, err, "2 of 4 evaluations failed", "brovey", "synthetic failure")
    report = json.loads(js.read_text())
    assert [r.get("error", "") != "" for r in report["results"]] == [False, False, True, True]
    assert "exp" in out and "failed" in out  # the table is still printed


def test_temp_files_removed_on_interrupt(scene, tmp_path, capsys, monkeypatch):
    from models.classical.brovey import Brovey

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))

    def stop(self, tile, coeffs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Brovey, "apply", stop)
    code, _, err = run(["evaluate", scene.pan, *scene.ms, "-m", "brovey", "-q"], capsys)
    one_line_error(code, err, "interrupted")
    assert code == 130
    assert list(tmp.iterdir()) == []


# ------------------------------------------------------------------ --reference / --fused
def test_reference_mode_equals_whole_array(scene, tmp_path, capsys):
    gt = read_cube(scene.ms)
    rng = np.random.default_rng(0)
    fused = gt + rng.normal(0, 25, gt.shape)
    gt_path = write_tif(tmp_path / "gt.tif", gt, like=scene.ms[0], dtype="uint16")
    f_path = write_tif(tmp_path / "other_tool.tif", fused, like=scene.ms[0])
    js = tmp_path / "r.json"
    args = ["evaluate", "--reference", gt_path, f_path, "--ratio", "4", "--bit-depth", "11"]
    code, out, err = run([*args, "--json", str(js), "--tile", "48", "-q"], capsys)
    assert code == 0, err
    report = json.loads(js.read_text())
    assert report["protocol"]["ratio"] == 4 and report["protocol"]["bit_depth"] == 11
    (res,) = report["results"]
    assert res["method"] == "other_tool.tif" and res["scale"] == "reduced"
    whole = reduced_resolution_indexes(fused, np.rint(gt), ratio=4, bit_depth=11)
    for k, v in whole.items():
        assert res[k] == pytest.approx(v, rel=1e-9), k
    # identical images: ideal values, PSNR infinite -> null in strict JSON
    code, out, err = run(
        ["evaluate", "--reference", gt_path, gt_path, "--ratio", "4", "--json", "-", "-q"], capsys
    )
    assert code == 0, err
    (same,) = json.loads(out)["results"]
    assert same["q2n"] == pytest.approx(1.0) and same["sam"] == pytest.approx(0.0)
    assert same["psnr"] is None


def test_fused_mode_equals_whole_array(scene, tmp_path, capsys):
    out_tif = tmp_path / "gsa_out.tif"
    code, _, err = run(
        ["fuse", scene.pan, *scene.ms, "-m", "gsa", "-o", str(out_tif), "-q"], capsys
    )
    assert code == 0, err
    js = tmp_path / "r.json"
    code, _, err = run(
        ["evaluate", "--fused", str(out_tif), scene.pan, *scene.ms, "--tile", "64"]
        + ["--json", str(js), "-q"],
        capsys,
    )
    assert code == 0, err
    report = json.loads(js.read_text())
    (res,) = report["results"]
    assert res["method"] == "gsa_out.tif" and res["scale"] == "full"
    sc = open_scene(scene.pan, scene.ms)
    ctx = build_context(sc, get_sensor("generic"), FuseOptions(), 16)
    reader = TileReader(sc, ctx, resampling="exp", dtype=np.float64)
    tile = reader.read(TileSpec(0, 0, 0, 160, 160, 0))
    reader.close()
    whole = full_resolution_indexes(
        read_cube([str(out_tif)]), tile.pan, read_cube(scene.ms), tile.ms, 2, ctx.ms_gains
    )
    for k, v in whole.items():
        assert res[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k


# ------------------------------------------------------------------ bad inputs
def test_reference_shape_mismatch(scene, tmp_path, capsys):
    gt = read_cube(scene.ms)
    g = write_tif(tmp_path / "gt.tif", gt, like=scene.ms[0])
    f = write_tif(tmp_path / "f.tif", gt[:, :-8, :], like=scene.ms[0])
    code, _, err = run(["evaluate", "--reference", g, f, "--ratio", "2", "-q"], capsys)
    one_line_error(code, err, "f.tif", "72x80", "80x80", "same grid")


def test_reference_band_mismatch(scene, tmp_path, capsys):
    gt = read_cube(scene.ms)
    g = write_tif(tmp_path / "gt.tif", gt, like=scene.ms[0])
    f = write_tif(tmp_path / "f.tif", gt[:3], like=scene.ms[0])
    code, _, err = run(["evaluate", "--reference", g, f, "--ratio", "2", "-q"], capsys)
    one_line_error(code, err, "3 bands", "has 4")


def test_fused_shape_and_band_mismatch(scene, tmp_path, capsys):
    cube = np.ones((4, 150, 160))
    f = write_tif(tmp_path / "small.tif", cube, like=scene.pan)
    code, _, err = run(["evaluate", "--fused", f, scene.pan, *scene.ms, "-q"], capsys)
    one_line_error(code, err, "small.tif", "150x160", "PAN grid")
    f3 = write_tif(tmp_path / "three.tif", np.ones((3, 160, 160)), like=scene.pan)
    code, _, err = run(["evaluate", "--fused", f3, scene.pan, *scene.ms, "-q"], capsys)
    one_line_error(code, err, "three.tif", "3 bands")


def test_ratio_not_power_of_two(make_scene, capsys):
    s = make_scene(pan_shape=(240, 240), ratio=3, bands=4)
    code, _, err = run(["evaluate", s.pan, *s.ms, "-m", "gsa", "-m", "mtf-glp", "-q"], capsys)
    line = one_line_error(code, err, "ratio 3", "power of two", "23-tap")
    assert "EXP(MS_LR)" in line and "mtf-glp" in line and "D_S, QNR and HQNR" in line
    assert "--reference" in line  # says what still works
    code, _, err = run(["evaluate", s.pan, *s.ms, "-m", "gsa", "--protocol", "full"], capsys)
    line = one_line_error(code, err, "ratio 3", "D_S, QNR and HQNR")
    assert "EXP(MS_LR)" not in line


def test_all_nodata_scene(make_scene, capsys):
    s = make_scene(pan_shape=(160, 160), ratio=2, nodata=0, nodata_box=(0, 0, 160, 160))
    code, _, err = run(["evaluate", s.pan, *s.ms, "-m", "exp", "-q"], capsys)
    one_line_error(code, err, "every pixel", "nodata", "nothing to evaluate")


def test_partial_nodata_scene(make_scene, capsys):
    s = make_scene(pan_shape=(160, 160), ratio=2, nodata=0, nodata_box=(0, 0, 40, 40))
    code, _, err = run(["evaluate", s.pan, *s.ms, "-m", "exp", "-q"], capsys)
    one_line_error(code, err, "nodata", "no mask", "crop")


def test_scene_smaller_than_one_block(make_scene, capsys):
    s = make_scene(pan_shape=(24, 24), ratio=4, bands=4)
    for proto in ("both", "full", "reduced"):
        code, _, err = run(["evaluate", s.pan, *s.ms, "-m", "exp", "--protocol", proto], capsys)
        one_line_error(code, err, "24x24", "smaller than one 32x32 block")


def test_too_small_for_the_border_cut(make_scene, capsys):
    s = make_scene(pan_shape=(128, 128), ratio=4, bands=4)  # GT 32 x 32 < 73
    code, _, err = run(["evaluate", s.pan, *s.ms, "-m", "exp", "-q"], capsys)
    one_line_error(code, err, "73x73", "32x32", "--protocol full")


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        ([], ("-m",)),
        (["-m", "nope"], ("unknown method 'nope'", "gsa")),
        (["-m", "exp", "--protocol", "half"], ("--protocol", "reduced")),
        (["-m", "pnn"], ("weights", "pnn")),
        (["-m", "exp", "--json", "/no/such/folder/r.json"], ("--json", "does not exist")),
    ],
)
def test_bad_options(scene, capsys, extra, needles):
    code, _, err = run(["evaluate", scene.pan, *scene.ms, *extra, "-q"], capsys)
    one_line_error(code, err, *needles)


def test_deep_method_with_weights(scene, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from models.deep.card import WeightsCard
    from models.deep.weights import save_weights
    from models.registry import create_model

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = create_model("dicnn", n_bands=4)
    card = WeightsCard(
        model="dicnn",
        kwargs=dict(model.config),
        sensor="generic",
        band_names=[],
        ratio=2,
        bit_depth=16,
        scale=65535.0,
    )
    path = tmp_path / "dicnn.safetensors"
    save_weights(path, model, card)
    args = ["evaluate", scene.pan, *scene.ms, "-m", "dicnn", "--weights", f"dicnn={path}"]
    code, out, err = run([*args, "--json", "-", "-q"], capsys)
    assert code == 0, err
    res = json.loads(out)["results"]
    assert [(r["method"], r["scale"]) for r in res] == [("dicnn", "reduced"), ("dicnn", "full")]
    assert all("error" not in r for r in res)
