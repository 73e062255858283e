"""``pansharp evaluate`` reads the tags ``pansharp fuse`` writes into its output.

``PANSHARP_SENSOR`` decides the MTF gains of D_lambda_K (and so HQNR) and
``PANSHARP_BIT_DEPTH`` the bit depth, unless ``--sensor`` / ``--bit-depth`` say
otherwise; an option that contradicts a tag wins and the report warns. The JSON says
which rule decided each (``sensor_source``, ``bit_depth_source``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from quality import FULL_KEYS, reduced_resolution_indexes
from tests.cli import run_cli
from tests.test_evaluate_streaming import read_cube


@pytest.fixture
def fused_wv2(make_scene, tmp_path, capsys):
    # ratio 4, 4 bands: WorldView-2's 4-band product; its MS gains (0.35) are not the
    # generic 0.3, so D_lambda_K and HQNR depend on which sensor is used
    s = make_scene(pan_shape=(256, 256), ratio=4, bands=4, seed=11)
    out = tmp_path / "wv2.tif"
    args = ["fuse", s.pan, *s.ms, "-m", "gsa", "--sensor", "worldview2", "-o", str(out), "-q"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    with rasterio.open(out) as ds:
        assert ds.tags()["PANSHARP_SENSOR"] == "worldview2"
        assert ds.tags()["PANSHARP_BIT_DEPTH"] == "11"
    return s, str(out)


def evaluate(args: list[str], capsys) -> dict:
    code, out, err = run_cli(["evaluate", *args, "--json", "-", "-q"], capsys)
    assert code == 0, err
    return json.loads(out)


def test_fused_tags_decide_sensor_and_bit_depth(fused_wv2, capsys):
    s, out = fused_wv2
    base = ["--fused", out, s.pan, *s.ms, "--tile", "64"]
    tagged = evaluate(base, capsys)
    proto = tagged["protocol"]
    assert proto["sensor"] == "worldview2" and proto["sensor_source"] == "fused tags"
    assert proto["bit_depth"] == 11 and proto["bit_depth_source"] == "fused tags"
    assert proto["ms_gains"] == [0.35] * 4
    assert tagged["warnings"] == []
    explicit = evaluate([*base, "--sensor", "worldview2"], capsys)
    assert explicit["protocol"]["sensor_source"] == "option"
    generic = evaluate([*base, "--sensor", "generic"], capsys)
    assert generic["protocol"]["ms_gains"] == [0.3] * 4
    (t,), (e,), (g,) = tagged["results"], explicit["results"], generic["results"]
    for k in FULL_KEYS:  # the same computation; tiles are summed in completion order
        assert t[k] == pytest.approx(e[k], rel=1e-12), k
    # the sensor enters D_lambda_K (MTF of F) and so HQNR; D_lambda and D_S do not
    assert abs(t["d_lambda_k"] - g["d_lambda_k"]) > 1e-4
    assert abs(t["hqnr"] - g["hqnr"]) > 1e-4
    assert t["d_lambda"] == pytest.approx(g["d_lambda"], rel=1e-12)
    assert t["d_s"] == pytest.approx(g["d_s"], rel=1e-12)
    # the option that contradicts the tag wins, and the report says so
    assert len(generic["warnings"]) == 1
    assert "--sensor generic" in generic["warnings"][0]
    assert "PANSHARP_SENSOR" in generic["warnings"][0] and "worldview2" in generic["warnings"][0]


def test_bit_depth_option_overrides_the_tag_with_a_warning(fused_wv2, capsys):
    s, out = fused_wv2
    report = evaluate(["--fused", out, s.pan, *s.ms, "--bit-depth", "12"], capsys)
    proto = report["protocol"]
    assert proto["bit_depth"] == 12 and proto["bit_depth_source"] == "option"
    assert proto["sensor_source"] == "fused tags"
    (w,) = report["warnings"]
    assert "--bit-depth 12" in w and "PANSHARP_BIT_DEPTH" in w and "(11)" in w


def test_warnings_are_printed_under_the_table(fused_wv2, capsys):
    s, out = fused_wv2
    code, stdout, err = run_cli(
        ["evaluate", "--fused", out, s.pan, *s.ms, "--sensor", "generic", "-q"], capsys
    )
    assert code == 0 and err == ""
    assert "sensor generic (option)" in stdout.replace("\n", " ")
    assert "warning: --sensor generic overrides the PANSHARP_SENSOR tag" in stdout


def test_untagged_fused_file_falls_back_to_detection(make_scene, tmp_path, capsys):
    s = make_scene(pan_shape=(160, 160), ratio=2, bands=4, seed=12)
    out = tmp_path / "plain.tif"
    with rasterio.open(s.pan) as ds:
        prof = dict(ds.profile, count=4, dtype="float64")
    with rasterio.open(out, "w", **prof) as ds:
        ds.write(np.ones((4, 160, 160)) * np.arange(1, 5)[:, None, None] * 300.0)
    report = evaluate(["--fused", str(out), s.pan, *s.ms], capsys)
    assert report["protocol"]["sensor"] == "generic"
    assert report["protocol"]["sensor_source"] == "generic"
    assert report["protocol"]["bit_depth_source"] not in (None, "fused tags", "option")


def test_reference_mode_takes_the_bit_depth_from_the_fused_tags(make_scene, tmp_path, capsys):
    # a float GT without NBITS: before the tag was read, PSNR/SSIM needed --bit-depth
    s = make_scene(pan_shape=(200, 200), ratio=2, bands=4, seed=13)
    gt = read_cube(s.ms)
    fused = gt + np.random.default_rng(2).normal(0, 15, gt.shape)
    with rasterio.open(s.ms[0]) as ds:
        prof = dict(ds.profile, dtype="float64")
    gt_p, f_p = tmp_path / "gt.tif", tmp_path / "f.tif"
    for path, arr in ((gt_p, gt), (f_p, fused)):
        with rasterio.open(path, "w", **prof) as ds:
            ds.write(arr)
    with rasterio.open(f_p, "r+") as ds:
        ds.update_tags(PANSHARP_BIT_DEPTH="11", PANSHARP_RATIO="2", PANSHARP_SENSOR="ikonos")
    report = evaluate(["--reference", str(gt_p), str(f_p)], capsys)
    proto = report["protocol"]
    assert proto["bit_depth"] == 11 and proto["bit_depth_source"] == "fused tags"
    assert proto["sensor"] == "ikonos" and proto["sensor_source"] == "fused tags"
    assert proto["ratio"] == 2
    ref = reduced_resolution_indexes(fused, gt, 2, 11)
    (res,) = report["results"]
    assert res["psnr"] == pytest.approx(ref["psnr"], rel=1e-9)
    assert res["ssim"] == pytest.approx(ref["ssim"], rel=1e-9)
