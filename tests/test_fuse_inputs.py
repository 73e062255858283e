"""What the inputs mean: geometry refusals, NaN and nodata, bit depth, radiometry, colour.

Refusals go through the bad-input corpus (tests/badinput.py); the rest reopen the
output and check what a GDAL/rasterio user expects of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp

from tests.badinput import Case, refusal_test
from tests.cli import run_cli
from tests.conftest import SHARED, needs_shared, write_raster

_write = write_raster


def _scene(make_scene, **kw):
    return make_scene(pan_shape=(96, 96), ratio=4, bands=4, **kw)


def _fuse_argv(pan: str, ms: list[str], out: Path, *extra: str) -> list[str]:
    return ["fuse", pan, *ms, "-o", str(out), "-m", "brovey", *extra]


def _far_crs(make_scene, tmp):
    s = _scene(make_scene)
    ms = np.full((4, 24, 24), 500, dtype="uint16")
    far = _write(tmp / "far.tif", ms, Affine(2.0, 0, 300000.0, 0, -2.0, 1000000.0), "EPSG:32633")
    out = tmp / "out.tif"
    return _fuse_argv(s.pan, [far], out), out


def _ms_at(pixel: float, name: str):
    """A uniform MS with ``pixel``-metre pixels over the PAN's 48 m x 48 m."""

    def build(make_scene, tmp):
        s = _scene(make_scene)
        n = round(48 / pixel)
        ms = np.full((4, n, n), 500, dtype="uint16")
        t = Affine(pixel, 0, 500000.0, 0, -pixel, 5000000.0)
        out = tmp / "out.tif"
        return _fuse_argv(s.pan, [_write(tmp / name, ms, t)], out), out

    return build


def _all_nodata(make_scene, tmp):
    s = _scene(make_scene)
    ms = np.zeros((4, 24, 24), dtype="uint16")
    t = Affine(2.0, 0, 500000.0, 0, -2.0, 5000000.0)
    empty = _write(tmp / "empty_ms.tif", ms, t, nodata=0)
    out = tmp / "out.tif"
    return _fuse_argv(s.pan, [empty], out), out


def _all_nan(make_scene, tmp):
    s = make_scene(pan_shape=(96, 96), ratio=4, bands=4, dtype="float32")
    ms = np.full((4, 24, 24), np.nan, dtype="float32")
    nan_ms = _write(tmp / "nan_ms.tif", ms, Affine(2.0, 0, 500000.0, 0, -2.0, 5000000.0))
    out = tmp / "out.tif"
    return _fuse_argv(s.pan, [nan_ms], out, "-m", "gsa"), out


def _with(*extra: str):
    def build(make_scene, tmp):
        s = _scene(make_scene)
        out = tmp / "out.tif"
        return _fuse_argv(s.pan, s.ms, out, *extra), out

    return build


CASES = [
    Case("ms-other-crs-no-overlap", _far_crs, 4, ("do not overlap", "far.tif")),
    Case("ms-finer-than-pan", _ms_at(0.125, "fine.tif"), 4, ("smaller than", "PAN first")),
    Case("ms-same-resolution", _ms_at(0.5, "same.tif"), 4, ("same size",)),
    Case("ms-all-nodata", _all_nodata, 3, ("no valid pixel", "empty_ms.tif", "--nodata")),
    Case("ms-all-nan", _all_nan, 3, ("no valid pixel", "nan_ms.tif")),
    Case("dtype-not-a-type", _with("--dtype", "foo"), 2, ("--dtype foo", "float32")),
    Case("dtype-complex", _with("--dtype", "complex64"), 2, ("--dtype complex64",)),
    Case("threads-negative", _with("--threads", "-3"), 2, ("--threads -3", "1 or more")),
    Case("threads-zero", _with("--threads", "0"), 2, ("--threads 0",)),
]

test_refused = refusal_test(CASES)


# ------------------------------------------------------------------- NaN in float inputs


@pytest.mark.parametrize("method", ["gsa", "mtf-glp-fs", "brovey", "bdsd-pc", "awlp"])
def test_nan_in_float_inputs_is_nodata(make_scene, tmp_path, capsys, method) -> None:
    """NaN pixels are masked in statistics and filters and written as the nodata (NaN);
    no traceback (GSA's SVD met NaN), no exploding values elsewhere."""
    s = make_scene(pan_shape=(320, 320), ratio=4, bands=4, dtype="float32", seed=2)
    with rasterio.open(s.pan, "r+") as ds:
        pan = ds.read()
        pan[0, 50:58, 70:90] = np.nan
        ds.write(pan)
    with rasterio.open(s.ms[0], "r+") as ds:
        ms = ds.read()
        ms[:, 30:33, 10:12] = np.nan
        ds.write(ms)
        lo, hi = float(np.nanmin(ms)), float(np.nanmax(ms))
    out = tmp_path / "out.tif"
    code, stdout, err = run_cli(
        ["fuse", s.pan, *s.ms, "-m", method, "-o", str(out), "--json", "-q"], capsys
    )
    assert code == 0, err
    assert json.loads(stdout)["nodata"] == "nan"
    with rasterio.open(out) as ds:
        assert ds.nodata is not None and np.isnan(ds.nodata)
        data = ds.read()
    assert np.isnan(data[:, 50:58, 70:90]).all()  # the PAN's NaN block
    assert np.isnan(data[:, 120:132, 40:48]).all()  # the MS's NaN samples (4x4 PAN px each)
    finite = np.isfinite(data)
    assert finite.mean() > 0.9
    span = hi - lo
    assert data[finite].min() > lo - span and data[finite].max() < hi + span


# ----------------------------------------------------------------- bit depth and sensor


def _summary(argv: list[str], capsys) -> dict:
    code, stdout, err = run_cli([*argv, "--json", "-q"], capsys)
    assert code == 0, err
    return json.loads(stdout)


def test_bit_depth_from_the_data_for_the_generic_sensor(make_scene, tmp_path, capsys) -> None:
    s = _scene(make_scene)  # uint16 values 100-2000: 11 bits hold them
    summary = _summary(["fuse", s.pan, *s.ms, "-o", str(tmp_path / "o.tif")], capsys)
    assert summary["bit_depth"] == 11
    assert "MS data maximum" in summary["bit_depth_source"]
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.tags()["PANSHARP_BIT_DEPTH"] == "11"
        assert ds.read().max() <= 2047


def test_bit_depth_rules_in_order(make_scene, tmp_path, capsys) -> None:
    s = _scene(make_scene)
    explicit = _summary(
        ["fuse", s.pan, *s.ms, "-o", str(tmp_path / "a.tif"), "--bit-depth", "12"], capsys
    )
    assert (explicit["bit_depth"], explicit["bit_depth_source"]) == (12, "--bit-depth")
    preset = _summary(
        ["fuse", s.pan, *s.ms, "-o", str(tmp_path / "b.tif"), "--sensor", "pleiades"], capsys
    )
    assert (preset["bit_depth"], preset["bit_depth_source"]) == (12, "sensor preset pleiades")
    with rasterio.open(s.ms[0]) as ds:
        ms14 = _write(tmp_path / "ms14.tif", ds.read(), ds.transform, str(ds.crs), nbits=14)
    nbits = _summary(["fuse", s.pan, ms14, "-o", str(tmp_path / "c.tif")], capsys)
    assert (nbits["bit_depth"], nbits["bit_depth_source"]) == (14, "NBITS metadata")


@needs_shared("spacenet6_wv2_tiles")
def test_worldview2_tiles_are_11_bit(tmp_path, capsys) -> None:
    d = SHARED / "spacenet6_wv2_tiles"
    summary = _summary(
        ["fuse", str(d / "pan1.tif"), str(d / "ms1.tif"), "-o", str(tmp_path / "o.tif")], capsys
    )
    assert summary["bit_depth"] == 11


def test_worldview2_preset_on_a_4_band_product(make_scene, tmp_path, capsys) -> None:
    """--sensor worldview2 with 4 bands is the 4-band product: blue, green, red, NIR1,
    shown in true colour (not coastal, blue, green, yellow)."""
    s = _scene(make_scene)
    out = tmp_path / "wv.tif"
    _summary(["fuse", s.pan, *s.ms, "-o", str(out), "--sensor", "worldview2"], capsys)
    with rasterio.open(out) as ds:
        assert list(ds.descriptions) == ["blue", "green", "red", "nir1"]
        assert list(ds.colorinterp[:3]) == [ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    from physics.sensors import get_sensor

    wv2 = get_sensor("worldview2")
    assert wv2.gains_for([None] * 4) == tuple(wv2.ms_gnyq[i] for i in (1, 2, 4, 6))


@pytest.mark.parametrize("profile", ["deflate", "zstd"])
def test_colour_interpretation_follows_band_names(make_scene, tmp_path, capsys, profile) -> None:
    """Both writers: bands named red/green/blue get that colour interpretation."""
    s = make_scene(pan_shape=(96, 96), ratio=4, bands=4, single_band_files=True)
    for path, name in zip(s.ms, ["nir", "red", "green", "blue"], strict=True):
        with rasterio.open(path, "r+") as ds:
            ds.set_band_description(1, name)
    out = tmp_path / "c.tif"
    _summary(["fuse", s.pan, *s.ms, "-o", str(out), "--profile", profile], capsys)
    with rasterio.open(out) as ds:
        assert list(ds.colorinterp[1:]) == [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        assert ds.colorinterp[0] != ColorInterp.red


# ------------------------------------------------------------------- mixed radiometry


def test_mixed_radiometry_warns(make_scene, tmp_path, capsys) -> None:
    """A 16-bit MS with an 8-bit PAN: a warning on stderr and in the JSON."""
    s = _scene(make_scene)
    with rasterio.open(s.pan) as ds:
        pan = (ds.read() // 16).astype("uint8")
        t, crs = ds.transform, ds.crs
    pan8 = _write(tmp_path / "pan8.tif", pan, t, str(crs))
    code, stdout, err = run_cli(
        ["fuse", pan8, *s.ms, "-o", str(tmp_path / "m.tif"), "--json", "-q"], capsys
    )
    assert code == 0
    warnings = json.loads(stdout)["warnings"]
    assert len(warnings) == 1 and "pan8.tif" in warnings[0]
    assert [ln for ln in err.splitlines() if ln.startswith("pansharp: warning:")]


def test_mixed_levels_warn_without_a_type_difference(make_scene, tmp_path, capsys) -> None:
    """Same type, but the PAN's values are 10x the MS's: warned by the mean levels."""
    s = _scene(make_scene)
    with rasterio.open(s.pan, "r+") as ds:
        ds.write((ds.read() * 10).astype("uint16"))
    summary = _summary(["fuse", s.pan, *s.ms, "-o", str(tmp_path / "m.tif")], capsys)
    assert len(summary["warnings"]) == 1 and "factor of" in summary["warnings"][0]


def test_matching_radiometry_does_not_warn(make_scene, tmp_path, capsys) -> None:
    s = _scene(make_scene)
    assert _summary(["fuse", s.pan, *s.ms, "-o", str(tmp_path / "m.tif")], capsys)["warnings"] == []


def test_level_stats_count_every_valid_pixel() -> None:
    """The means use every 4th pixel, the valid count every pixel: a core whose only
    valid pixel is off that lattice is not "no valid pixel" (a wrong refusal)."""
    from raster.radiometry import LevelStats

    stats = LevelStats()
    valid = np.zeros((16, 16), bool)
    valid[5, 7] = True
    stats.add(np.ones((16, 16)), np.ones((4, 16, 16)), valid)
    assert stats.valid == 1
