"""``pansharp evaluate`` on inputs with nodata: a border is left out, holes are refused.

quality.md's indexes have no mask, so ``quality.valid_area`` scores the rectangle that
holds data in every input, exactly as if the user had cropped the scene to it. The
references here are computed on the cropped arrays with the whole-array indexes
(``quality.full_resolution_indexes`` / ``reduced_resolution_indexes``), or by evaluating
files cropped by hand: they must agree to the rounding of float64 sums (tolerance
below).

Why the masked evaluation must equal the cropped reference: every pixel the evaluation
reads lies inside the valid rectangle, where the masked file holds the un-zeroed values;
the PAN and the EXP-interpolated MS at a pixel depend only on scene coordinates (the
reader's resampling weights are functions of the pixel's position, never of the tile),
and PAN_lp, MTF(F), the block grid and the border cut are computed from the arrays of
the rectangle, as the whole-array functions compute them from the cropped arrays. What
differs is the order of the float64 sums (per-tile partial sums, banded matrix products
over other windows): relative 1e-9, as in ``test_evaluate_streaming`` (observed there
3e-14). Q2n rounds to uint16, so a value within ~1e-13 of .5 could move a block value;
1e-9 leaves no room for it and it does not happen on these seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from physics.sensors import get_sensor
from quality import FULL_KEYS, REDUCED_KEYS, full_resolution_indexes, reduced_resolution_indexes
from raster.scene import open_scene
from tests.badinput import Case, refusal_test
from tests.cli import run_cli
from tests.test_evaluate_streaming import read_cube
from tiling.fuse import FuseOptions, build_context
from tiling.reader import TileReader
from tiling.windows import TileSpec

RTOL = 1e-9
BORDER = 7


def write_like(path: Path, arr: np.ndarray, like: str, nodata=None, dtype=None, shift=(0, 0)):
    """``arr`` as a GeoTIFF on ``like``'s grid, its origin moved by ``shift`` pixels."""
    with rasterio.open(like) as ds:
        t = ds.transform @ Affine.translation(shift[1], shift[0])
        crs, dt = ds.crs, dtype or ds.dtypes[0]
    kw = dict(driver="GTiff", count=arr.shape[0], height=arr.shape[1], width=arr.shape[2])
    with rasterio.open(path, "w", dtype=dt, transform=t, crs=crs, nodata=nodata, **kw) as ds:
        ds.write(arr.astype(dt))
    return str(path)


def evaluate_json(args: list[str], capsys) -> dict:
    code, out, err = run_cli(["evaluate", *args, "--json", "-", "-q"], capsys)
    assert code == 0, err
    return json.loads(out)


def scores(report: dict) -> dict[str, float]:
    (res,) = report["results"]
    keys = FULL_KEYS if res["scale"] == "full" else REDUCED_KEYS
    return {k: res[k] for k in keys}


def fuse(scene, tmp_path: Path, capsys, *extra: str) -> str:
    out = tmp_path / "gsa_out.tif"
    code, _, err = run_cli(
        ["fuse", scene.pan, *scene.ms, "-m", "gsa", "-o", str(out), "-q", *extra], capsys
    )
    assert code == 0, err
    return str(out)


def frame(arr: np.ndarray, width: int, value: float) -> np.ndarray:
    """A copy of (B, H, W) ``arr`` with a ``width``-pixel frame set to ``value``."""
    out = arr.copy()
    out[:, :width] = value
    out[:, -width:] = value
    out[:, :, :width] = value
    out[:, :, -width:] = value
    return out


# ------------------------------------------------------------------ --fused
@pytest.fixture
def scene(make_scene):
    return make_scene(pan_shape=(160, 160), ratio=2, bands=4, seed=5)


def interior_reference(scene, fused: np.ndarray, lo: int, hi: int) -> dict[str, float]:
    """Full-resolution indexes of the scene cropped to PAN rows/cols [lo, hi) (lo, hi even).

    EXP(MS) is the engine's, read on the whole scene and cropped (what the evaluation
    reads at those pixels); PAN_lp and MTF(F) are computed on the cropped arrays.
    """
    sc = open_scene(scene.pan, scene.ms)
    ctx = build_context(sc, get_sensor("generic"), FuseOptions(), None)
    reader = TileReader(sc, ctx, resampling="exp", dtype=np.float64)
    h, w = sc.out_shape
    tile = reader.read(TileSpec(0, 0, 0, h, w, 0))
    reader.close()
    i = slice(lo, hi)
    m = slice(lo // 2, hi // 2)
    ms = read_cube(scene.ms)
    return full_resolution_indexes(
        fused[:, i, i], tile.pan[i, i], ms[:, m, m], tile.ms[:, i, i], 2, ctx.ms_gains
    )


@pytest.mark.parametrize(
    ("fill", "nodata", "dtype", "rule"),
    [
        (0, None, None, "all-zero pixels treated as nodata"),  # the Orfeo ToolBox's border
        (0, 0, None, "nodata value 0 in all bands"),  # GDAL output declaring it
        (np.nan, None, "float32", "NaN/inf"),  # float output, NaN border
    ],
    ids=["zero-undeclared", "zero-declared", "nan-float"],
)
def test_fused_border_is_left_out(scene, tmp_path, capsys, fill, nodata, dtype, rule):
    out = fuse(scene, tmp_path, capsys)
    whole_file = scores(evaluate_json(["--fused", out, scene.pan, *scene.ms], capsys))
    cube = read_cube([out])
    bordered = write_like(
        tmp_path / "other_tool.tif", frame(cube, BORDER, fill), out, nodata=nodata, dtype=dtype
    )
    report = evaluate_json(["--fused", bordered, scene.pan, *scene.ms, "--tile", "64"], capsys)
    # rows/cols 7..153 hold data; whole MS pixels (ratio 2) make that 8..152
    area = report["scene"]["valid_area"]
    assert area["rows"] == [8, 152] and area["cols"] == [8, 152]
    assert area["left_out_px"] == 160 * 160 - 144 * 144
    assert report["scene"]["full_grid"] == [144, 144]
    frame_px = 160 * 160 - (160 - 2 * BORDER) ** 2
    assert report["scene"]["fused_nodata"] == f"{rule} ({frame_px} px)"
    got = scores(report)
    ref = interior_reference(scene, cube, 8, 152)
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=RTOL, abs=1e-12), k
    # the crop matters: the whole file scores otherwise (D_lambda by ~3e-4 here)
    assert any(abs(got[k] - whole_file[k]) > 1e-5 for k in FULL_KEYS)


def test_fused_nan_border_of_a_float_pan(make_scene, tmp_path, capsys):
    """NaN in a float input is nodata: a PAN with a NaN border scores like a fused file
    with a zero border of the same width (both crop the scene to the same rectangle)."""
    s = make_scene(pan_shape=(160, 160), ratio=2, bands=4, seed=6, dtype="float32")
    out = fuse(s, tmp_path, capsys)
    cube = read_cube([out])
    zeroed = write_like(tmp_path / "zeroed.tif", frame(cube, 8, 0), out, nodata=0)
    by_fused = evaluate_json(["--fused", zeroed, s.pan, *s.ms], capsys)
    with rasterio.open(s.pan) as ds:
        pan = ds.read()
    nan_pan = write_like(tmp_path / "pan_nan.tif", frame(pan, 8, np.nan), s.pan)
    by_pan = evaluate_json(["--fused", out, nan_pan, *s.ms], capsys)
    assert by_pan["scene"]["valid_area"]["rows"] == [8, 152]
    assert by_pan["scene"]["nodata"]["PAN"] == f"NaN/inf ({160 * 160 - 144 * 144} px)"
    got, ref = scores(by_pan), scores(by_fused)
    assert all(np.isfinite(v) for v in got.values())
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=RTOL, abs=1e-12), k


def test_all_zero_pixels_inside_the_valid_area_are_data(scene, tmp_path, capsys):
    out = fuse(scene, tmp_path, capsys)
    cube = frame(read_cube([out]), BORDER, 0)
    cube[:, 80:82, 80:82] = 0  # dark pixels inside: scored as they are, with a warning
    path = write_like(tmp_path / "dark.tif", cube, out)
    report = evaluate_json(["--fused", path, scene.pan, *scene.ms], capsys)
    assert report["scene"]["valid_area"]["rows"] == [8, 152]
    assert "4 all-zero px inside the valid area scored as data" in report["scene"]["fused_nodata"]
    assert any("4 pixels inside the valid area" in w for w in report["warnings"])
    ref = interior_reference(scene, cube, 8, 152)
    for k, v in ref.items():
        assert scores(report)[k] == pytest.approx(v, rel=RTOL, abs=1e-12), k


def test_declared_nodata_is_a_pixel_with_every_band_at_the_value(scene, tmp_path, capsys):
    """One band at the nodata value is a dark pixel clipped at 0, not a missing one."""
    out = fuse(scene, tmp_path, capsys)
    cube = frame(read_cube([out]), BORDER, 0)
    cube[0, 40:60, 90:100] = 0  # band 1 clipped to 0 in 200 pixels inside
    path = write_like(tmp_path / "clipped.tif", cube, out, nodata=0)
    report = evaluate_json(["--fused", path, scene.pan, *scene.ms], capsys)
    assert report["scene"]["valid_area"]["rows"] == [8, 152]
    ref = interior_reference(scene, cube, 8, 152)
    for k, v in ref.items():
        assert scores(report)[k] == pytest.approx(v, rel=RTOL, abs=1e-12), k


# ------------------------------------------------------------------ --reference
def test_reference_border_is_left_out(make_scene, tmp_path, capsys):
    s = make_scene(pan_shape=(200, 200), ratio=2, bands=4, seed=7)  # GT 100 x 100
    gt = read_cube(s.ms)
    fused = gt + np.random.default_rng(1).normal(0, 20, gt.shape)
    gt_path = write_like(tmp_path / "gt.tif", gt, s.ms[0])
    f_path = write_like(tmp_path / "f.tif", frame(np.rint(fused), BORDER, 0), s.ms[0])
    args = ["--reference", gt_path, f_path, "--ratio", "2", "--bit-depth", "11", "--tile", "40"]
    report = evaluate_json(args, capsys)
    assert report["scene"]["valid_area"]["rows"] == [BORDER, 100 - BORDER]
    assert report["scene"]["reduced_grid"] == [100 - 2 * BORDER] * 2
    i = slice(BORDER, 100 - BORDER)
    ref = reduced_resolution_indexes(np.rint(fused)[:, i, i], gt[:, i, i], 2, 11)
    for k, v in ref.items():
        assert scores(report)[k] == pytest.approx(v, rel=RTOL, abs=1e-12), k


# ------------------------------------------------------------------ -m METHOD
def test_methods_on_float_inputs_with_a_nan_border(make_scene, tmp_path, capsys):
    """NaN rows/columns around float inputs are nodata: the scene is scored on the rest.

    Reduced resolution reads only the GT crop and its PAN blocks, so it equals the
    evaluation of files cropped by hand to the same rectangle; full resolution reads
    the MS around the rectangle too (EXP's reach, NaN weighted out), so it is only
    required to be finite.
    """
    s = make_scene(pan_shape=(200, 200), ratio=2, bands=4, seed=8, dtype="float32")
    with rasterio.open(s.pan) as ds:
        pan = ds.read()
    ms = read_cube(s.ms)
    pan[:, :8], pan[:, :, -6:] = np.nan, np.nan
    ms[:, :4], ms[:, :, -3:] = np.nan, np.nan
    pan_p = write_like(tmp_path / "pan.tif", pan, s.pan)
    ms_p = write_like(tmp_path / "ms.tif", ms, s.ms[0])
    args = ["-m", "exp", "-m", "gsa", "--bit-depth", "16", "--tile", "64"]
    report = evaluate_json([pan_p, ms_p, *args], capsys)
    assert report["scene"]["valid_area"]["rows"] == [8, 200]
    assert report["scene"]["valid_area"]["cols"] == [0, 194]
    assert report["scene"]["reduced_grid"] == [96, 96]
    assert report["scene"]["full_grid"] == [192, 194]
    assert "error" not in json.dumps(report["results"])
    for r in report["results"]:
        keys = REDUCED_KEYS if r["scale"] == "reduced" else FULL_KEYS
        assert all(np.isfinite(r[k]) for k in keys), r
    crop_pan = write_like(tmp_path / "pan_c.tif", pan[:, 8:, :194], s.pan, shift=(8, 0))
    crop_ms = write_like(tmp_path / "ms_c.tif", ms[:, 4:, :97], s.ms[0], shift=(4, 0))
    cropped = evaluate_json([crop_pan, crop_ms, *args, "--protocol", "reduced"], capsys)
    got = [r for r in report["results"] if r["scale"] == "reduced"]
    for r, c in zip(got, cropped["results"], strict=True):
        assert r["method"] == c["method"]
        for k in REDUCED_KEYS:
            assert r[k] == pytest.approx(c[k], rel=RTOL, abs=1e-12), (r["method"], k)


# ------------------------------------------------------------------ refusals
def _float_scene(make_scene, tmp_path, edit_pan=None, edit_ms=None):
    s = make_scene(pan_shape=(160, 160), ratio=2, bands=4, seed=9, dtype="float32")
    with rasterio.open(s.pan) as ds:
        pan = ds.read()
    ms = read_cube(s.ms)
    if edit_pan:
        edit_pan(pan)
    if edit_ms:
        edit_ms(ms)
    pan_p = write_like(tmp_path / "pan_x.tif", pan, s.pan)
    ms_p = write_like(tmp_path / "ms_x.tif", ms, s.ms[0])
    return s, pan_p, ms_p


def _set(sl, value):
    def edit(a):
        a[sl] = value

    return edit


def _ms_all_nan(make_scene, tmp_path):
    _, pan, ms = _float_scene(make_scene, tmp_path, edit_ms=_set(np.s_[:], np.nan))
    out = tmp_path / "r.json"
    return ["evaluate", pan, ms, "-m", "exp", "--bit-depth", "16", "--json", str(out)], out


def _fused_ms_all_nan(make_scene, tmp_path):
    s, pan, ms = _float_scene(make_scene, tmp_path, edit_ms=_set(np.s_[:], np.nan))
    fused = write_like(tmp_path / "f.tif", np.ones((4, 160, 160)), s.pan)
    out = tmp_path / "r.json"
    return ["evaluate", "--fused", fused, pan, ms, "--json", str(out)], out


def _pan_nan_hole(make_scene, tmp_path):
    _, pan, ms = _float_scene(make_scene, tmp_path, edit_pan=_set(np.s_[:, 70:74, 70:74], np.nan))
    out = tmp_path / "r.json"
    return ["evaluate", pan, ms, "-m", "exp", "--bit-depth", "16", "--json", str(out)], out


def _fused_nan_hole(make_scene, tmp_path):
    s = make_scene(pan_shape=(160, 160), ratio=2, bands=4, seed=9)
    cube = np.full((4, 160, 160), 500.0)
    cube[:, 60:62, 60:62] = np.nan
    fused = write_like(tmp_path / "holey.tif", cube, s.pan, dtype="float32")
    out = tmp_path / "r.json"
    return ["evaluate", "--fused", fused, s.pan, *s.ms, "--json", str(out)], out


def _fused_all_zero(make_scene, tmp_path):
    s = make_scene(pan_shape=(160, 160), ratio=2, bands=4, seed=9)
    fused = write_like(tmp_path / "black.tif", np.zeros((4, 160, 160)), s.pan, dtype="uint16")
    out = tmp_path / "r.json"
    return ["evaluate", "--fused", fused, s.pan, *s.ms, "--json", str(out)], out


def _reference_all_nan(make_scene, tmp_path):
    s = make_scene(pan_shape=(200, 200), ratio=2, bands=4, seed=9)
    gt = write_like(
        tmp_path / "gt_nan.tif", np.full((4, 100, 100), np.nan), s.ms[0], dtype="float32"
    )
    f = write_like(tmp_path / "f.tif", read_cube(s.ms), s.ms[0])
    out = tmp_path / "r.json"
    return [
        "evaluate",
        "--reference",
        gt,
        f,
        "--ratio",
        "2",
        "--bit-depth",
        "11",
        "--json",
        str(out),
    ], out


def _disjoint(make_scene, tmp_path):
    # PAN has data on the left half only, the MS on the right half only
    _, pan, ms = _float_scene(
        make_scene,
        tmp_path,
        edit_pan=_set(np.s_[:, :, 80:], np.nan),
        edit_ms=_set(np.s_[:, :, :40], np.nan),
    )
    out = tmp_path / "r.json"
    return ["evaluate", pan, ms, "-m", "exp", "--bit-depth", "16", "--json", str(out)], out


# An MS (or reference) without a single valid pixel is RasterFormatError, exit 3: the
# file opens but cannot be used as given, whatever it is paired with. Inputs that each
# hold data, but never at the same place, are GeometryError, exit 4 (like PAN and MS that
# do not overlap). Holes inside the valid area are QualityError, exit 7: the files are
# fine, the protocol's indexes cannot be computed on them.
CASES = [
    Case("ms-all-nan", _ms_all_nan, 3, ("ms_x.tif", "every pixel", "nodata", "NaN")),
    Case("fused-ms-all-nan", _fused_ms_all_nan, 3, ("MS", "ms_x.tif", "every pixel")),
    Case("reference-all-nan", _reference_all_nan, 3, ("reference", "gt_nan.tif", "every pixel")),
    Case(
        "fused-all-zero", _fused_all_zero, 3, ("black.tif", "0 in all bands", "declares no nodata")
    ),
    Case("pan-nan-hole", _pan_nan_hole, 7, ("pan_x.tif", "16 px", "no mask", "crop")),
    Case("fused-nan-hole", _fused_nan_hole, 7, ("holey.tif", "4 px", "no mask", "crop")),
    Case("disjoint-data", _disjoint, 4, ("pan_x.tif", "ms_x.tif", "do not overlap")),
]
test_refused = refusal_test(CASES)
