"""Where the classical formulas leave their domain: ratio guards and estimation-area refusals.

Ratios: every quotient of images that multiplies an MS band goes through
``models.classical.guards.modulation``. On a seeded tile with near-zero dark pixels
(dark water, and a NIR band of four times the PAN's contrast, so its equalised PAN
crosses zero as over Landsat 7's water) the unguarded quotient explodes; guarded, the
output stays within [0, K max(MS)], K = ``MAX_MODULATION``. On the ordinary synthetic
scene of ``test_classical_methods`` the guard changes no bit.

Estimation area: a fit whose filters leave fewer estimation pixels than its regression
has unknowns refuses (``GeometryError``, exit 4) with the minimum MS size, instead of
returning zero coefficients (EXP's output).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

import models.classical.brovey as brovey_mod
import models.classical.bth as bth_mod
import models.classical.cs_regression as csr_mod
import models.classical.mra as mra_mod
from errors import GeometryError
from models.classical.common import starck_murtagh_lowpass
from models.classical.guards import MAX_MODULATION, min_side
from models.registry import create_model, get_entry, model_names
from physics.degrade import degrade_ms
from physics.resample import interp23
from tests.badinput import Case, refusal_test
from tests.test_classical_methods import GAINS, RATIO, fit, whole_tile
from tests.test_classical_methods import make_scene as synthetic_scene

K = MAX_MODULATION
EPS = np.finfo(np.float64).eps
#: module whose ``modulation`` each ratio method calls
MODULES = {"sfim": mra_mod, "mtf-glp-hpm": mra_mod, "awlp": mra_mod, "bt-h": bth_mod}
MODULES |= {"pracs": csr_mod, "brovey": brovey_mod}
FITTED = [n for n in model_names() if get_entry(n).info.needs_fit]


def unguarded(num: Any, den: Any, fill: float = 1.0, limit: Any = None) -> np.ndarray:
    """The toolbox's ``num ./ (den + eps)``: no guard at all."""
    return np.asarray(num, dtype=np.float64) / (np.asarray(den, dtype=np.float64) + EPS)


def plain(num: Any, den: Any, fill: float = 1.0, limit: Any = None) -> np.ndarray:
    """num / den, what the guard must return on in-domain data."""
    return np.asarray(num, dtype=np.float64) / np.asarray(den, dtype=np.float64)


def apply_with(monkeypatch, name: str, tile, coeffs, division=None) -> np.ndarray:
    """``apply`` of ``name``, with its module's ``modulation`` replaced by ``division``."""
    with monkeypatch.context() as patch:
        if division is not None:
            patch.setattr(MODULES[name], "modulation", division)
        return create_model(name).apply(tile, coeffs)


def dark_tile(seed: int = 0, size: int = 256):
    """Seeded scene with a dark-water disc (0.5 DN in every band, >1 % of the area) and a
    NIR band of four times the other bands' contrast that the PAN does not see (Landsat's
    PAN): the NIR's equalisation gain is ~3, so its equalised PAN is far below zero over
    the water and its low-pass crosses zero along the shore. MS = EXP, floored at 0.5 DN
    (near zero, never negative)."""
    rng = np.random.default_rng(seed)

    def field(sigma: float) -> np.ndarray:
        return ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma, mode="wrap") * sigma

    common = sum(field(s) for s in (1.0, 2.0, 4.0, 8.0))
    common /= common.std()
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - 120) ** 2 + (xx - 130) ** 2 < 50**2).astype(float)
    water = ndimage.gaussian_filter(disc, 2)
    bands = []
    for b in range(4):
        own = sum(field(s) for s in (1.5, 4.0, 8.0))
        own /= own.std()
        land = 300 + 60 * b + (60 if b < 3 else 250) * (0.8 * common + 0.6 * own)
        bands.append(np.maximum(land, 5.0) * (1 - water) + 0.5 * water)
    truth = np.stack(bands)
    pan = np.tensordot([0.35, 0.35, 0.3, 0.0], truth, axes=1)
    exp = np.maximum(interp23(degrade_ms(truth, GAINS, RATIO), RATIO), 0.5)
    return whole_tile(pan, exp)


@pytest.fixture(scope="module")
def dark():
    tile = dark_tile()
    return tile, {n: fit(create_model(n), [tile]) for n in ("sfim", "mtf-glp-hpm", "pracs")}


# ------------------------------------------------------------------------ ratio guards


@pytest.mark.parametrize("name", ["sfim", "mtf-glp-hpm", "pracs"])
def test_dark_pixels_stay_within_k_times_the_data(name, dark, monkeypatch) -> None:
    """The toolbox's formula leaves [0, K max(MS)] by thousands of DN on the dark tile
    (SFIM and MTF-GLP-HPM above it, PRACS below); guarded, every output is inside."""
    tile, coeffs = dark
    top = K * tile.ms.max()
    raw = apply_with(monkeypatch, name, tile, coeffs[name], unguarded)
    assert raw.min() < -0.5 * top or raw.max() > top, "the tile does not stress the formula"
    out = apply_with(monkeypatch, name, tile, coeffs[name])
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= top, (out.min(), out.max(), top)


@pytest.mark.parametrize("name", ["sfim", "mtf-glp-hpm", "bt-h", "pracs", "awlp"])
def test_normal_data_unchanged_bit_for_bit(name, monkeypatch) -> None:
    """On the ordinary scene the quotients are in [0, limit] (all but one BT-H pixel,
    where a dark PAN pixel makes the equalised PAN negative): there the guard is plain
    division, bit for bit, and within a few ulp of the toolbox's ./(y + eps)."""
    tile = synthetic_scene()["tile"]
    k = fit(create_model(name), [tile])
    quotients: list[tuple[np.ndarray, Any]] = []

    def recording(num, den, fill=1.0, limit=K):
        quotients.append((plain(num, den), limit))
        return quotients[-1][0]

    reference = apply_with(monkeypatch, name, tile, k, recording)
    ((q, limit),) = quotients
    inside = np.broadcast_to((q >= 0) & (q <= limit), reference.shape)
    assert (~inside).sum() <= (4 if name == "bt-h" else 0)  # 1 pixel x 4 bands
    guarded = apply_with(monkeypatch, name, tile, k)
    np.testing.assert_array_equal(guarded[inside], reference[inside])
    toolbox = apply_with(monkeypatch, name, tile, k, unguarded)
    np.testing.assert_allclose(guarded[inside], toolbox[inside], rtol=8 * EPS, atol=0)


def _plant(tile, pixels: list[tuple[int, int]], values: np.ndarray):
    """The tile with the MS of ``pixels`` replaced by ``values`` (B,) (apply only)."""
    ms = tile.ms.copy()
    for r, c in pixels:
        ms[:, r, c] = values
    return replace(tile, ms=ms)


PLANTED = [(40, 40), (41, 90), (200, 17)]


def test_bt_h_intensity_through_zero_is_bounded(monkeypatch) -> None:
    """BT-H: I = sum alpha_b (MS_b - L_b) is ~0 where one band sits below its haze and
    another above it (MS >= 0): the toolbox's P_eq / I explodes, the guard keeps
    [L_b, K max(MS)]."""
    tile = synthetic_scene()["tile"]
    k = fit(create_model("bt-h"), [tile])
    haze, alpha = np.asarray(k["haze"]), np.asarray(k["alpha"])
    assert alpha[0] > 0 and alpha[3] > 0 and haze[0] > 50
    vals = haze.copy()
    vals[3] = haze[3] + 40.0  # 40 DN above its haze ...
    vals[0] = haze[0] - (alpha[3] * 40.0 - 1e-9) / alpha[0]  # ... cancelled by band 0
    assert (vals >= 0).all()
    planted = _plant(tile, PLANTED, vals)
    top = K * planted.ms.max()
    raw = apply_with(monkeypatch, "bt-h", planted, k, unguarded)
    assert np.abs(raw).max() > 1e3 * top
    out = apply_with(monkeypatch, "bt-h", planted, k)
    assert out.min() >= haze.min() and out.max() <= top


def test_awlp_proportion_through_zero_is_bounded(monkeypatch) -> None:
    """AWLP: MS_b / mean_c MS_c is in [0, B] for non-negative bands; with an undershoot
    (a negative band) the mean can be ~0. Guarded: |F - MS| <= B gain_b |P - LP(P)|."""
    tile = synthetic_scene()["tile"]
    k = fit(create_model("awlp"), [tile])
    planted = _plant(tile, PLANTED, np.array([30.0, -10.0, -10.0, -10.0 + 1e-9]))
    raw = apply_with(monkeypatch, "awlp", planted, k, unguarded)
    assert np.abs(raw).max() > 1e6
    out = apply_with(monkeypatch, "awlp", planted, k)
    detail = np.abs(tile.pan - starck_murtagh_lowpass(tile.pan, RATIO))
    n_bands = planted.ms.shape[0]
    bound = n_bands * np.asarray(k["gain"]).reshape(-1, 1, 1) * detail[None]
    assert (np.abs(out - planted.ms) <= bound * (1 + 1e-12)).all()


def test_brovey_negative_band_is_bounded_and_gdal_pixels_untouched() -> None:
    """Float data: a pixel with a negative band and I ~ 0 gets |F_b| <= K |MS_b|; every
    other pixel is GDAL's MS_b P / I exactly."""
    tile = synthetic_scene()["tile"]
    tile = replace(tile, ctx=replace(tile.ctx, dtype="float32"))
    w = np.asarray(tile.ctx.weights)
    vals = np.array([-30.0, 4.0, 3.0, 3.0])
    vals[0] += -(w @ vals) / w[0] + 1e-7  # I = w . MS ~ 1e-8
    planted = _plant(tile, PLANTED, vals)
    out = create_model("brovey").apply(planted, None)
    gdal = planted.ms * (planted.pan / np.tensordot(w, planted.ms, axes=1))[None]
    rows, cols = zip(*PLANTED, strict=True)
    assert np.abs(gdal[:, rows, cols]).max() > 1e8
    assert (np.abs(out[:, rows, cols]) <= K * np.abs(planted.ms[:, rows, cols])).all()
    keep = np.ones(tile.pan.shape, bool)
    keep[rows, cols] = False
    np.testing.assert_array_equal(out[:, keep], gdal[:, keep])


# ------------------------------------------------------------- estimation-area refusals


def _tile(n_ms: int, seed: int = 0):
    """A whole-image tile of an all-valid n_ms x n_ms MS (PAN n_ms ratio square)."""
    return synthetic_scene(seed=seed, size=n_ms * RATIO)["tile"]


def _stated_side(name: str, tile) -> int | None:
    """The minimum side the method's refusal states on ``tile`` (None: it fits)."""
    method = create_model(name)
    try:
        fit(method, [tile])
    except GeometryError as exc:
        msg = str(exc)
        assert f"method {name} needs at least" in msg and "choose another -m" in msg
        side = re.search(r"at least (\d+) x \1 valid MS pixels", msg)
        assert side, msg
        return int(side.group(1))
    return None


@pytest.mark.parametrize("name", ["bdsd-pc", "mtf-glp-fs"])
def test_32x32_ms_refused_with_the_size_it_needs(name) -> None:
    """The brief's case: a 32 x 32 MS at ratio 4 gave exactly EXP's output."""
    side = _stated_side(name, _tile(32))
    assert side == {"bdsd-pc": 43, "mtf-glp-fs": 35}[name]


@pytest.mark.parametrize("name", FITTED)
def test_stated_minimum_is_enough_and_tight(name) -> None:
    """Every fitted method: below a size it refuses; at the size it states it fits, with
    coefficients that are not the zero fallback; for BDSD-PC and MTF-GLP-FS one MS
    pixel less is refused again (their minimum is exact)."""
    side = _stated_side(name, _tile(3))
    if side is None:  # only covariances of valid pixels: 3 x 3 MS is plenty
        assert name in ("ihs", "gihs", "pca", "gs", "sfim")
        side = 3
    else:
        assert side > 3
    tile = _tile(side)
    assert _stated_side(name, tile) is None
    coeffs = fit(create_model(name), [tile])
    detail = coeffs.get("gamma", coeffs.get("g", coeffs.get("w", coeffs.get("gain"))))
    assert np.abs(np.asarray(detail)).max() > 0
    if name in ("bdsd-pc", "mtf-glp-fs"):
        assert _stated_side(name, _tile(side - 1)) == side


@pytest.mark.parametrize("name", FITTED)
def test_no_valid_pixel_at_all_is_left_to_the_caller(name) -> None:
    """An all-nodata tile writes only nodata whatever the coefficients; the engine refuses
    the empty scene in its own words (tests/test_fuse_inputs.py), the fit stays quiet."""
    tile = _tile(12)
    fit(create_model(name), [replace(tile, valid=np.zeros_like(tile.valid))])


def test_one_valid_pixel_is_refused() -> None:
    """A covariance from one pixel: the plain-moment methods refuse too."""
    tile = _tile(12)
    valid = np.zeros_like(tile.valid)
    valid[20, 20] = True
    with pytest.raises(GeometryError, match="method ihs needs at least 1 x 1"):
        fit(create_model("ihs"), [replace(tile, valid=valid)])


def test_min_side_formulas() -> None:
    # PAN grid: (N ratio - 2 h)^2 >= needed; MTF-GLP-FS at ratio 4: h = 68, 4 N >= 138
    assert min_side(4, 2, pan_half=68) == 35
    assert min_side(2, 2, pan_half=44) == 45
    # MS samples: BDSD-PC, 20 MS pixels per edge and 5 unknowns: 40 + ceil(sqrt 5)
    assert min_side(4, 5, pan_half=20, ms_half=20, lr=True) == 43
    assert min_side(4, 9, pan_half=20, ms_half=20, lr=True) == 43
    assert min_side(4, 10, pan_half=20, ms_half=20, lr=True) == 44


# ------------------------------------------------------------------ corpus (CLI)


def _small(method: str, **scene: Any):
    def build(make_scene, tmp):
        s = make_scene(**scene)
        out = tmp / "out.tif"
        return ["fuse", s.pan, *s.ms, "-o", str(out), "-m", method], out

    return build


_MS32 = {"pan_shape": (128, 128), "ratio": 4}
# a 12-PAN-pixel (3 MS pixel) wide valid strip: GSA's B3 footprint (8 px) leaves nothing
_STRIP = {"pan_shape": (256, 256), "ratio": 4, "nodata": 0, "nodata_box": (0, 12, 256, 256)}

CASES = [
    Case(
        "bdsd-pc-on-32x32-ms",
        _small("bdsd-pc", **_MS32),
        4,
        ("method bdsd-pc", "43 x 43 valid MS pixels", "1024 valid pixels", "-m such as gsa"),
    ),
    Case(
        "mtf-glp-fs-on-32x32-ms",
        _small("mtf-glp-fs", **_MS32),
        4,
        ("method mtf-glp-fs", "35 x 35 valid MS pixels", "1024 valid pixels", "-m"),
    ),
    Case(
        "gsa-on-a-3-pixel-strip",
        _small("gsa", **_STRIP),
        4,
        ("method gsa", "7 x 7 valid MS pixels", "192 valid pixels", "nodata", "-m"),
    ),
]

test_refused = refusal_test(CASES)
