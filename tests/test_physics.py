"""The physics written once: 23-tap interpolation, MTF filters, imresize, degradation, presets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import correlate1d

from errors import UnknownNameError
from physics.degrade import decimate, degraded_ms_transform, wald_pair
from physics.kernels import KERNELS, axis_matrix, half_band_23
from physics.mtf import mtf_kernel
from physics.resample import imresize, interp23
from physics.sensors import SENSORS, detect_sensor, get_sensor


def toolbox_interp23(ms: np.ndarray, ratio: int) -> np.ndarray:
    """The toolbox's procedure written out literally (quality.md): zero insertion at odd
    positions in the first stage, even positions later, 23-tap filtering of rows and
    columns, circular borders."""
    h = half_band_23()
    out = ms.astype(np.float64)
    for stage in range(int(np.log2(ratio))):
        b, r, c = out.shape
        up = np.zeros((b, 2 * r, 2 * c))
        first = 1 if stage == 0 else 0
        up[:, first::2, first::2] = out
        up = correlate1d(up, h, axis=1, mode="wrap")
        out = correlate1d(up, h, axis=2, mode="wrap")
    return out


@pytest.mark.parametrize("ratio", [2, 4, 8])
def test_interp23_matches_the_toolbox_away_from_borders(ratio):
    rng = np.random.default_rng(ratio)
    ms = rng.random((3, 40, 36)) * 1000
    ours, ref = interp23(ms, ratio), toolbox_interp23(ms, ratio)
    m = 12 * ratio  # quality.md: may differ only within ~12*ratio pixels of the edge
    np.testing.assert_allclose(ours[:, m:-m, m:-m], ref[:, m:-m, m:-m], rtol=0, atol=1e-8)
    # and the samples land at ratio*j + ratio/2
    np.testing.assert_allclose(ours[:, ratio // 2 :: ratio, ratio // 2 :: ratio], ms, atol=1e-8)


def test_interp23_rejects_non_power_of_two():
    with pytest.raises(ValueError, match="power-of-two"):
        interp23(np.zeros((1, 8, 8)), 3)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_kernels_keep_constants(kernel):
    pos = np.linspace(-0.4, 29.4, 97)
    m = axis_matrix(pos, 30, kernel)
    np.testing.assert_allclose(m @ np.full(30, 7.0), 7.0, rtol=1e-9)


@pytest.mark.parametrize(("gnyq", "ratio"), [(0.3, 4), (0.15, 4), (0.34, 2), (0.11, 4)])
def test_mtf_kernel_has_the_sensor_gain_at_nyquist(gnyq, ratio):
    """The filter's frequency response at the MS Nyquist frequency 1/(2 ratio) is GNyq."""
    h = mtf_kernel(gnyq, ratio)
    assert h.shape == (41, 41)
    n = 41
    f = 1.0 / (2 * ratio)
    x = np.arange(n) - n // 2
    resp = np.abs(np.sum(h * np.cos(2 * np.pi * f * x)[None, :]))
    dc = h.sum()
    assert abs(dc - 1) < 0.01
    assert abs(resp / dc - gnyq) < 0.02, (resp, gnyq)
    assert np.allclose(h, h.T) and np.allclose(h, h[::-1, ::-1])


def test_imresize_halves_a_ramp_into_pair_means():
    ramp = np.tile(np.arange(32.0), (16, 1))
    small = imresize(ramp, 0.5)
    assert small.shape == (8, 16)
    np.testing.assert_allclose(small[:, 2:-2], (ramp[:8, 4:-4:2] + ramp[:8, 5:-3:2]) / 2)


def test_wald_pair_shapes_and_phase():
    rng = np.random.default_rng(0)
    ms = rng.random((4, 64, 64))
    pan = rng.random((256, 256))
    pan_lr, ms_lr = wald_pair(pan, ms, SENSORS["quickbird"].gains(4), 4)
    assert pan_lr.shape == (64, 64) and ms_lr.shape == (4, 16, 16)
    from affine import Affine

    t = degraded_ms_transform(Affine(2, 0, 100, 0, -2, 500), 4)
    assert (t.a, t.c, t.f) == (8, 101, 499)


def test_decimate_keeps_the_toolbox_phase():
    a = np.arange(16.0)[None, :].repeat(16, 0)
    assert decimate(a, 4)[0].tolist() == [2, 6, 10, 14]
    assert decimate(a, 2)[0].tolist() == [1, 3, 5, 7, 9, 11, 13, 15]


def test_sensor_lookup_and_errors():
    assert get_sensor("WV2").name == "worldview2"
    assert get_sensor("Landsat9").name == "landsat8"
    assert get_sensor("worldview2").gains(4) == (0.35, 0.35, 0.35, 0.35)
    with pytest.raises(UnknownNameError, match="valid names: .*quickbird"):
        get_sensor("hubble")
    for s in SENSORS.values():
        assert all(0 < g < 1 for g in s.ms_gnyq) and 0 < s.pan_gnyq < 1


def test_sensor_detected_from_landsat_mtl():
    from tests.conftest import SAMPLE

    s = detect_sensor([SAMPLE / "LC80200392015216_B8.tif"])
    assert s is not None and s.name == "landsat8"


def test_band_names_reorder_gains_and_weights():
    """Landsat 7 crops store red, green, blue, nir, swir1, swir2: the preset's per-band
    values follow the descriptions, not the position."""
    l7 = get_sensor("landsat7")
    names = ["red", "green", "blue", "nir", "swir1", "swir2"]
    w = l7.weights_for(names)
    assert w[2] == 0.0 and w[0] > 0 and abs(sum(w) - 1) < 1e-12  # blue is outside the PAN
    qb = get_sensor("quickbird")
    assert qb.gains_for(["nir", "red", "green", "blue"]) == (0.22, 0.30, 0.32, 0.34)
    assert qb.gains_for([None, None, None, None]) == qb.gains(4)
    assert detect_sensor([], {}, 8).name == "worldview2"
    assert detect_sensor([], {}, 5) is None


def test_degrade_pan_follows_a_sub_pixel_ms_offset():
    """Landsat: GT pixel k covers PAN [2k + 0.5, 2k + 2.5); PAN_LR pixel k must be centred
    there (value 2k + 1 on a ramp), not on the PAN block [2k, 2k + 2) (value 2k + 0.5)."""
    from physics.degrade import degrade_pan

    ramp = np.tile(np.arange(64.0), (8, 1))
    aligned = degrade_pan(ramp, 2)
    shifted = degrade_pan(ramp, 2, (0.0, 0.5))
    k = np.arange(4, 28)
    np.testing.assert_allclose(aligned[:, k], np.broadcast_to(2 * k + 0.5, (4, k.size)))
    np.testing.assert_allclose(shifted[:, k], np.broadcast_to(2 * k + 1.0, (4, k.size)))
