"""Classical CS and MRA methods on seeded synthetic scenes (whole-image tiles).

The scene: a smooth random 4-band "truth" with a component shared by all bands and a
band-specific one; PAN = weighted sum of the truth's bands; MS = truth MTF-filtered and
decimated (``physics.degrade.degrade_ms``); the tile's MS = ``interp23`` of it (EXP).
Every method is checked for the properties a correct pansharpening has on such a scene
(spectral consistency, PAN correlation, closeness to the truth) and for the two-pass
contract (invalid pixels never enter a statistic; partial sums are additive).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

from models.base import FuseContext, Tile
from models.classical.common import starck_murtagh_kernel
from models.classical.guards import MAX_MODULATION, modulation
from models.classical.histogram import histogram, percentile
from models.registry import create_model, get_entry, model_names
from physics.degrade import degrade_ms
from physics.resample import interp23

RATIO = 4
SIZE = 256
GAINS = (0.34, 0.32, 0.30, 0.22)
WEIGHTS = (0.1, 0.3, 0.3, 0.3)
LR_MARGIN = 8  # MS pixels left out of the spectral check (degradation border effects)
PAN_MARGIN = 32  # PAN pixels left out of the truth comparison

CS = ["bt-h", "ihs", "gihs", "pca", "gs", "gsa", "bdsd-pc", "pracs"]
MRA = ["sfim", "mtf-glp", "mtf-glp-hpm", "mtf-glp-fs", "awlp"]
METHODS = CS + MRA

#: Relative spectral error bound per method (measured on this scene, with margin):
#: global-intensity CS methods distort the spectrum more than the adaptive ones.
SPECTRAL_BOUND = {
    **{m: 0.30 for m in ("ihs", "gihs", "pca", "gs")},
    **{m: 0.18 for m in ("bdsd-pc", "pracs", "sfim")},
    **{m: 0.10 for m in ("bt-h", "gsa", "mtf-glp", "mtf-glp-hpm", "mtf-glp-fs", "awlp")},
}
#: Methods whose RMSE to the truth must be well below EXP's on this scene.
STRONG = ("bt-h", "gsa", "mtf-glp", "mtf-glp-hpm", "mtf-glp-fs", "awlp")


def make_ctx(n_bands: int = 4, max_value: float | None = None) -> FuseContext:
    return FuseContext(
        ratio=RATIO,
        n_bands=n_bands,
        ms_gains=GAINS[:n_bands],
        pan_gain=0.15,
        weights=WEIGHTS[:n_bands],
        bit_depth=None if max_value is None else int(np.log2(max_value + 1)),
        max_value=max_value,
    )


def make_scene(seed: int = 0, size: int = SIZE) -> dict[str, Any]:
    """Truth, PAN, MS_LR, EXP and a whole-image tile (core = everything)."""
    rng = np.random.default_rng(seed)

    def field(sigma: float) -> np.ndarray:
        return ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma, mode="wrap") * sigma

    common = sum(field(s) for s in (1.0, 2.0, 4.0, 8.0))
    common /= common.std()
    bands = []
    for b in range(4):
        own = sum(field(s) for s in (1.5, 4.0, 8.0))
        own /= own.std()
        bands.append(400 + 150 * b + 120 * (0.6 + 0.3 * b) * common + 60 * own)
    truth = np.stack(bands)
    w = np.asarray(WEIGHTS) / np.sum(WEIGHTS)
    pan = np.tensordot(w, truth, axes=1)
    ms_lr = degrade_ms(truth, GAINS, RATIO)
    exp = interp23(ms_lr, RATIO)
    return {"truth": truth, "pan": pan, "ms_lr": ms_lr, "exp": exp, "tile": whole_tile(pan, exp)}


def whole_tile(
    pan: np.ndarray,
    ms: np.ndarray,
    valid: np.ndarray | None = None,
    core: tuple[slice, slice] | None = None,
    ctx: FuseContext | None = None,
    origin: tuple[int, int] = (0, 0),
) -> Tile:
    """A tile whose pixel (0, 0) is scene pixel ``origin``; MS samples at ratio j + ratio/2
    of the scene grid."""
    h, w = pan.shape
    return Tile(
        pan=pan,
        ms=ms,
        valid=np.ones((h, w), bool) if valid is None else valid,
        core=(slice(0, h), slice(0, w)) if core is None else core,
        sample_rows=np.arange((RATIO // 2 - origin[0]) % RATIO, h, RATIO),
        sample_cols=np.arange((RATIO // 2 - origin[1]) % RATIO, w, RATIO),
        ctx=make_ctx(ms.shape[0]) if ctx is None else ctx,
    )


def fit(method: Any, tiles: list[Tile]) -> Any:
    """Sum the partials of ``tiles`` (as the engine does) and finish."""
    totals: dict[str, np.ndarray] = {}
    for t in tiles:
        for k, v in method.fit_tile(t).items():
            totals[k] = totals[k] + v if k in totals else np.array(v, copy=True)
    return method.fit_finish(totals, tiles[0].ctx)


def flat(coeffs: Any) -> np.ndarray:
    """All numbers of a coefficient structure, in a fixed order."""
    if isinstance(coeffs, dict):
        parts = [flat(coeffs[k]) for k in sorted(coeffs)]
        return np.concatenate(parts) if parts else np.zeros(0)
    return np.atleast_1d(np.asarray(coeffs, dtype=np.float64)).ravel()


def spectral_error(fused: np.ndarray, ms_lr: np.ndarray) -> float:
    """||MTF-degrade(F) - MS_LR|| / ||MS_LR - mean||, interior MS pixels."""
    m = LR_MARGIN
    diff = (degrade_ms(fused, GAINS, RATIO) - ms_lr)[:, m:-m, m:-m]
    ref = (ms_lr - ms_lr.mean(axis=(1, 2), keepdims=True))[:, m:-m, m:-m]
    return float(np.linalg.norm(diff) / np.linalg.norm(ref))


def pan_correlation(fused: np.ndarray, pan: np.ndarray) -> float:
    return float(np.mean([np.corrcoef(b.ravel(), pan.ravel())[0, 1] for b in fused]))


def rmse(fused: np.ndarray, truth: np.ndarray) -> float:
    m = PAN_MARGIN
    return float(np.sqrt(np.mean((fused - truth)[:, m:-m, m:-m] ** 2)))


@pytest.fixture(scope="module")
def scene() -> dict[str, Any]:
    return make_scene()


@pytest.fixture(scope="module")
def fused(scene: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for name in METHODS:
        method = create_model(name)
        out[name] = method.apply(scene["tile"], fit(method, [scene["tile"]]))
    return out


@pytest.fixture(scope="module")
def wrong_answers(scene: dict[str, Any]) -> dict[str, float]:
    """Spectral errors of PAN-only answers: raw PAN in every band, and the PAN matched
    to each band's mean/std (a wrong answer with the right statistics)."""
    pan, exp = scene["pan"], scene["exp"]
    pan_rep = np.repeat(pan[None], 4, axis=0)
    pan_eq = np.stack([(pan - pan.mean()) * b.std() / pan.std() + b.mean() for b in exp])
    return {
        "pan_rep": spectral_error(pan_rep, scene["ms_lr"]),
        "pan_eq": spectral_error(pan_eq, scene["ms_lr"]),
    }


def blob_mask(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Valid mask with a few invalid discs and an invalid border strip."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    valid = np.ones(shape, bool)
    for _ in range(4):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        valid &= (yy - cy) ** 2 + (xx - cx) ** 2 > rng.integers(4, 12) ** 2
    valid[:, :7] = False
    return valid


# ------------------------------------------------------------------- registration


@pytest.mark.parametrize("name", METHODS)
def test_registered_with_halo_and_fit(name: str) -> None:
    info = get_entry(name).info
    assert info.name == name
    assert info.family == ("cs" if name in CS else "mra")
    assert info.needs_fit
    for ratio in (2, 4):
        assert isinstance(info.halo(ratio), int) and info.halo(ratio) >= 0
    assert info.halo(4) >= info.halo(2)


def test_halos_cover_the_filters_they_chain() -> None:
    h = {n: get_entry(n).info.halo(4) for n in METHODS}
    assert h["mtf-glp"] >= 20 + 11 * 4  # MTF filter + 23-tap re-interpolation
    assert h["mtf-glp-fs"] == h["mtf-glp-hpm"] == h["mtf-glp"]
    assert h["bt-h"] >= 20  # LPfilterGauss, 41 taps
    assert h["bdsd-pc"] >= 20 * 4  # MTF filter at MS scale
    assert h["gsa"] >= 8  # B3-spline approximation, 2 levels
    assert h["ihs"] == h["gs"] == h["pca"] == 0  # pointwise, global statistics only


@pytest.mark.parametrize(
    "name", [n for n in model_names() if get_entry(n).info.family in ("cs", "mra", "interp")]
)
@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_apply_leaves_the_tile_alone(name: str, dtype: str, scene: dict[str, Any]) -> None:
    """Methods work on their own buffers: the reader's arrays are not theirs to change."""
    tile = replace(scene["tile"], ctx=replace(scene["tile"].ctx, dtype=dtype))
    before = {k: getattr(tile, k).copy() for k in ("pan", "ms", "valid")}
    method = create_model(name)
    coeffs = fit(method, [tile]) if get_entry(name).info.needs_fit else None
    method.apply(tile, coeffs)
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(tile, k), v, err_msg=f"{name} changed tile.{k}")


# -------------------------------------------------------------- quality properties


@pytest.mark.parametrize("name", METHODS)
def test_shape_and_finite(name: str, scene: dict[str, Any], fused: dict[str, np.ndarray]) -> None:
    out = fused[name]
    assert out.shape == scene["exp"].shape
    assert np.issubdtype(out.dtype, np.floating)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", METHODS)
def test_spectral_consistency(
    name: str,
    scene: dict[str, Any],
    fused: dict[str, np.ndarray],
    wrong_answers: dict[str, float],
) -> None:
    """Degrading the output gives back the MS, better than a PAN-only answer."""
    err = spectral_error(fused[name], scene["ms_lr"])
    assert err < SPECTRAL_BOUND[name]
    assert err < 0.8 * wrong_answers["pan_eq"]
    assert err < 0.2 * wrong_answers["pan_rep"]


@pytest.mark.parametrize("name", METHODS)
def test_correlates_with_pan_more_than_exp(
    name: str, scene: dict[str, Any], fused: dict[str, np.ndarray]
) -> None:
    pan = scene["pan"]
    assert pan_correlation(fused[name], pan) > pan_correlation(scene["exp"], pan) + 0.05


@pytest.mark.parametrize("name", METHODS)
def test_closer_to_truth_than_exp(
    name: str, scene: dict[str, Any], fused: dict[str, np.ndarray]
) -> None:
    base = rmse(scene["exp"], scene["truth"])
    err = rmse(fused[name], scene["truth"])
    assert err < 0.8 * base
    if name in STRONG:
        assert err < 0.45 * base


# ------------------------------------------------------------------ fit contract


@pytest.mark.parametrize("name", METHODS)
def test_invalid_pixels_never_enter_the_fit(name: str, scene: dict[str, Any]) -> None:
    """Garbage (huge values, NaN, inf) under invalid pixels of the core and the halo
    changes neither the coefficients nor the outputs at valid pixels."""
    pan, exp = scene["pan"], scene["exp"]
    valid = blob_mask(pan.shape, seed=3)
    core = (slice(24, SIZE - 24), slice(24, SIZE - 24))
    clean = whole_tile(pan, exp, valid, core)

    rng = np.random.default_rng(7)
    bad = ~valid
    junk_pan, junk_ms = pan.copy(), exp.copy()
    junk_pan[bad] = rng.uniform(-1e7, 1e7, bad.sum())
    junk_ms[:, bad] = rng.uniform(-1e7, 1e7, (4, bad.sum()))
    junk_pan.flat[np.flatnonzero(bad)[::3]] = np.nan
    junk_ms[1][bad] = np.inf
    junk = whole_tile(junk_pan, junk_ms, valid, core)

    method = create_model(name)
    k_clean = fit(method, [clean])
    k_junk = fit(method, [junk])
    np.testing.assert_array_equal(flat(k_junk), flat(k_clean))
    assert np.isfinite(flat(k_clean)).all()

    out_clean, out_junk = method.apply(clean, k_clean), method.apply(junk, k_junk)
    assert np.isfinite(out_junk[:, valid]).all()
    np.testing.assert_array_equal(out_junk[:, valid], out_clean[:, valid])


@pytest.mark.parametrize("name", METHODS)
def test_invalid_pixels_count_as_absent(name: str, scene: dict[str, Any]) -> None:
    """An invalid strip full of garbage gives the coefficients of the scene without it.

    Tile A: the whole scene, columns [0, CUT) invalid (garbage) and outside the core.
    Tile B: the scene cropped to columns [CUT, end). Statistics of filtered images
    next to the strip must not see the strip (in A) nor the crop border (in B).
    """
    cut = 40  # a multiple of the ratio: the crop keeps the MS sample grid
    pan, exp = scene["pan"].copy(), scene["exp"].copy()
    disc = blob_mask(pan.shape, seed=9)
    disc[:, :7] = True
    if name == "bdsd-pc":  # its 20-MS-pixel footprint around a disc leaves no sample of
        disc[:] = True  # this 64 x 64 MS to estimate from (the fit refuses): strip only
    valid_a = disc.copy()
    valid_a[:, :cut] = False
    pan[:, :cut] = 5e6
    exp[:, :, :cut] = -3e6
    tile_a = whole_tile(pan, exp, valid_a, (slice(0, SIZE), slice(cut, SIZE)))
    tile_b = whole_tile(
        scene["pan"][:, cut:], scene["exp"][:, :, cut:], disc[:, cut:], origin=(0, cut)
    )
    method = create_model(name)
    k_a, k_b = flat(fit(method, [tile_a])), flat(fit(method, [tile_b]))
    np.testing.assert_allclose(k_a, k_b, rtol=1e-10, atol=1e-10 * np.abs(k_b).max())


@pytest.mark.parametrize("name", METHODS)
def test_fit_partials_are_additive(name: str, scene: dict[str, Any]) -> None:
    """Two half-tiles with their own halos (split off the sample grid) sum to the whole
    tile's coefficients; a halo pixel counted twice would show."""
    pan, exp = scene["pan"], scene["exp"]
    valid = blob_mask(pan.shape, seed=5)
    halo = get_entry(name).info.halo(RATIO)
    split = 101
    top_end, bottom_start = min(split + halo, SIZE), max(split - halo, 0)
    top = whole_tile(
        pan[:top_end], exp[:, :top_end], valid[:top_end], (slice(0, split), slice(0, SIZE))
    )
    bottom = whole_tile(
        pan[bottom_start:],
        exp[:, bottom_start:],
        valid[bottom_start:],
        (slice(split - bottom_start, SIZE - bottom_start), slice(0, SIZE)),
        origin=(bottom_start, 0),
    )
    method = create_model(name)
    whole = flat(fit(method, [whole_tile(pan, exp, valid)]))
    halves = flat(fit(method, [top, bottom]))
    np.testing.assert_allclose(halves, whole, rtol=1e-9, atol=1e-9 * np.abs(whole).max())


@pytest.mark.parametrize("name", [m for m in METHODS if m not in ("mtf-glp", "mtf-glp-fs")])
def test_zero_regions_stay_finite(name: str, scene: dict[str, Any]) -> None:
    """Exact zeros in PAN and MS (valid pixels) must not produce inf/NaN (every method
    that divides by an image or a statistic; the additive GLPs have no such division)."""
    pan, exp = scene["pan"].copy(), scene["exp"].copy()
    pan[100:140, 60:120] = 0.0
    exp[:, 90:150, 50:130] = 0.0
    tile = whole_tile(pan, exp)
    method = create_model(name)
    out = method.apply(tile, fit(method, [tile]))
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", ["gsa", "mtf-glp", "pracs"])
def test_float32_tiles(name: str, scene: dict[str, Any], fused: dict[str, np.ndarray]) -> None:
    tile = scene["tile"]
    t32 = replace(tile, pan=tile.pan.astype(np.float32), ms=tile.ms.astype(np.float32))
    method = create_model(name)
    out = method.apply(t32, fit(method, [t32]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, fused[name], rtol=1e-4, atol=1e-2)


# --------------------------------------------------------------- method specifics


def test_bdsd_pc_gains_respect_the_physical_constraints(scene: dict[str, Any]) -> None:
    gamma = fit(create_model("bdsd-pc"), [scene["tile"]])["gamma"]
    assert gamma.shape == (4, 5)
    assert (gamma[:, 0] >= 0).all() and (gamma[:, 1:] <= 0).all()
    assert (gamma[:, 0] > 0).any()


def test_pca_first_component_is_a_unit_vector_with_matlab_sign(scene: dict[str, Any]) -> None:
    w = fit(create_model("pca"), [scene["tile"]])["w"]
    assert np.isclose(np.linalg.norm(w), 1.0)
    assert w[np.argmax(np.abs(w))] > 0


def test_gsa_regression_recovers_the_pan_weights(scene: dict[str, Any]) -> None:
    """PAN = sum w_b truth_b: the regressed intensity weights approach w."""
    w = fit(create_model("gsa"), [scene["tile"]])["w"]
    true = np.asarray(WEIGHTS) / np.sum(WEIGHTS)
    np.testing.assert_allclose(w, true, atol=0.12)
    assert abs(w.sum() - 1.0) < 0.1


def test_bt_h_haze_is_the_toolbox_percentile_for_integer_data(scene: dict[str, Any]) -> None:
    pan, exp = np.rint(scene["pan"]), np.rint(scene["exp"])
    tile = whole_tile(pan, exp, ctx=make_ctx(4, max_value=2047.0))
    haze = fit(create_model("bt-h"), [tile])["haze"]
    fractions = (0.95, 0.45, 0.40, 0.05)
    expect = [f * np.percentile(b, 1, method="hazen") for f, b in zip(fractions, exp, strict=True)]
    np.testing.assert_array_equal(haze, expect)


def test_histogram_percentile_matches_matlab_prctile() -> None:
    rng = np.random.default_rng(11)
    ints = make_ctx(1, max_value=2047.0)
    floats = make_ctx(1)
    for n in (1, 2, 9, 1000):
        x = rng.integers(0, 2048, n).astype(float)
        for p in (0.5, 1.0, 50.0, 99.9):
            assert percentile(histogram(x, ints), p, ints) == np.percentile(x, p, method="hazen")
        xf = rng.normal(300.0, 50.0, n)
        got = percentile(histogram(xf, floats), 1.0, floats)
        assert got == pytest.approx(np.percentile(xf, 1.0, method="hazen"), rel=1e-2)


def test_modulation_and_b3_kernel() -> None:
    """In [0, K] the plain quotient; a denominator below |num| / K floored there (K);
    opposite signs and 0/0 the fill."""
    num = np.array([1.0, 0.0, 2.0, -1.0, 3.0, 1.0, -2.0, 7.9, 0.0])
    den = np.array([0.0, 0.0, 4.0, 2.0, -1e-9, 1e-12, -1.0, 2.0, 5.0])
    out = modulation(num, den, fill=0.25)
    k = MAX_MODULATION
    np.testing.assert_array_equal(out, [k, 0.25, 0.5, 0.25, 0.25, k, 2.0, min(3.95, k), 0.0])
    k = starck_murtagh_kernel(4)  # [1 4 6 4 1]/16 four times: binomial(16)/2^16
    assert k.size == 17 and np.isclose(k.sum(), 1.0)
    assert np.isclose(k[8], 12870 / 2**16)
