"""raster.scene_facts: the sensor, bit depth and band facts every run decides once.

Precedence: the option > a fused file's PANSHARP_* tags > the inputs' metadata >
generic / the data type; errors name the flag; ``fuse`` and ``evaluate`` decide the
same sensor and bit depth for the same scene.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from errors import OptionError, UnknownNameError
from physics.sensors import get_sensor
from quality.evaluate import evaluate_fused, evaluate_methods
from raster.radiometry import BIT_DEPTHS, output_nodata
from raster.scene import open_scene
from raster.scene_facts import (
    FROM_BIT_DEPTH_OPTION,
    FROM_DETECTION,
    FROM_GENERIC,
    FROM_SENSOR_OPTION,
    FROM_TAGS,
    NOT_DECIDED,
    TAG_BIT_DEPTH,
    TAG_RATIO,
    TAG_SENSOR,
    FusedTags,
    SceneOptions,
    decide,
    decide_reference,
)
from tiling.fuse import FuseOptions, build_context, fuse_files


def _ms_max(paths: list[str]) -> float:
    peak = 0.0
    for p in paths:
        with rasterio.open(p) as ds:
            peak = max(peak, float(ds.read().max()))
    return peak


@pytest.fixture
def four(make_scene):
    s = make_scene(pan_shape=(128, 128), ratio=4, bands=4, seed=3)
    return s, open_scene(s.pan, s.ms)


@pytest.fixture
def eight(make_scene):
    # 8 bands: detected as WorldView-2 (physics.sensors.detect_sensor, by band count)
    s = make_scene(pan_shape=(128, 128), ratio=4, bands=8, seed=4, name="eight")
    return s, open_scene(s.pan, s.ms)


# ----------------------------------------------------------------------------- sensor
def test_sensor_generic_then_detected(four, eight):
    generic = decide(four[1])
    assert (generic.sensor.name, generic.sensor_source) == ("generic", FROM_GENERIC)
    detected = decide(eight[1])
    assert (detected.sensor.name, detected.sensor_source) == ("worldview2", FROM_DETECTION)
    assert generic.warnings == () and detected.warnings == ()


def test_sensor_tags_beat_detection_and_the_option_beats_tags(eight):
    scene = eight[1]
    tags = FusedTags("out.tif", {TAG_SENSOR: "ikonos"})
    tagged = decide(scene, tags=tags)
    assert (tagged.sensor.name, tagged.sensor_source) == ("ikonos", FROM_TAGS)
    assert tagged.warnings == ()
    chosen = decide(scene, SceneOptions(sensor="quickbird"), tags)
    assert (chosen.sensor.name, chosen.sensor_source) == ("quickbird", FROM_SENSOR_OPTION)
    (w,) = chosen.warnings
    assert "--sensor quickbird" in w and TAG_SENSOR in w and "ikonos" in w and "out.tif" in w
    # an option that agrees with the tag: no warning
    assert decide(scene, SceneOptions(sensor="ikonos"), tags).warnings == ()


def test_unknown_sensor_tag_is_ignored_with_a_warning(eight):
    facts = decide(eight[1], tags=FusedTags("out.tif", {TAG_SENSOR: "nosuchsat"}))
    assert (facts.sensor.name, facts.sensor_source) == ("worldview2", FROM_DETECTION)
    (w,) = facts.warnings
    assert "nosuchsat" in w and TAG_SENSOR in w and "ignored" in w


def test_unknown_sensor_option_names_the_flag(four):
    with pytest.raises(UnknownNameError, match="--sensor"):
        decide(four[1], SceneOptions(sensor="nosuchsat"))


# -------------------------------------------------------------------------- bit depth
def test_bit_depth_from_the_data_then_tags_then_the_option(four):
    s, scene = four
    peak = _ms_max(s.ms)
    expect = next(b for b in BIT_DEPTHS if peak <= 2**b - 1)
    data = decide(scene)
    assert data.bits == expect and "MS data maximum" in data.bit_depth.source
    tagged_bits = expect + 1
    tags = FusedTags("out.tif", {TAG_BIT_DEPTH: str(tagged_bits)})
    tagged = decide(scene, tags=tags)
    assert (tagged.bits, tagged.bit_depth.source) == (tagged_bits, FROM_TAGS)
    explicit = decide(scene, SceneOptions(bit_depth=14), tags)
    assert (explicit.bits, explicit.bit_depth.source) == (14, FROM_BIT_DEPTH_OPTION)
    (w,) = explicit.warnings
    assert "--bit-depth 14" in w and TAG_BIT_DEPTH in w and f"({tagged_bits})" in w
    assert explicit.max_value == 2.0**14 - 1


def test_sensor_preset_bit_depth_and_a_bad_tag(four):
    scene = four[1]
    preset = decide(scene, SceneOptions(sensor="pleiades"))
    assert preset.bits == get_sensor("pleiades").bit_depth
    assert preset.bit_depth.source == "sensor preset pleiades"
    bad = decide(scene, SceneOptions(sensor="pleiades"), FusedTags("o.tif", {TAG_BIT_DEPTH: "x"}))
    assert bad.bits == preset.bits
    (w,) = bad.warnings
    assert TAG_BIT_DEPTH in w and "'x'" in w and "ignored" in w


def test_bit_depth_too_wide_for_the_type_names_the_flag(four):
    with pytest.raises(OptionError, match="--bit-depth 17 does not fit the MS data type uint16"):
        decide(four[1], SceneOptions(bit_depth=17))


def test_float_scene_has_no_bit_depth_and_headers_only_skips_it(make_scene):
    s = make_scene(pan_shape=(96, 96), ratio=2, bands=3, dtype="float32", name="f")
    scene = open_scene(s.pan, s.ms)
    facts = decide(scene)
    assert facts.bits is None and facts.max_value is None
    assert "float32" in facts.bit_depth.source
    assert decide(scene, headers_only=True).bit_depth.source == NOT_DECIDED


# ------------------------------------------------------------------ bands, nodata, tags
def test_band_weights_option(four):
    scene = four[1]
    with pytest.raises(OptionError, match="--band-weights has 3 values but the MS has 4"):
        decide(scene, SceneOptions(band_weights=[1, 2, 3]))
    facts = decide(scene, SceneOptions(band_weights=[1, 2, 3, 4]))
    assert facts.weights == (1.0, 2.0, 3.0, 4.0)
    ctx = build_context(scene, facts.sensor, FuseOptions(band_weights=[1, 2, 3, 4]), facts.bits)
    assert ctx == facts.context()


def test_four_band_worldview_product_names_and_gains(four):
    facts = decide(four[1], SceneOptions(sensor="wv3"))
    assert facts.band_names == ("blue", "green", "red", "nir1")
    table = get_sensor("worldview3")
    order = [table.band_names.index(n) for n in facts.band_names]
    assert facts.ms_gains == tuple(table.ms_gnyq[i] for i in order)


@pytest.mark.parametrize("out_dtype", ["uint16", "int16", "float32"])
def test_output_nodata_is_radiometry_rule(make_scene, out_dtype):
    s = make_scene(pan_shape=(96, 96), ratio=2, bands=3, nodata=0, nodata_box=(0, 0, 8, 8))
    scene = open_scene(s.pan, s.ms)
    assert decide(scene).output_nodata(out_dtype) == output_nodata(scene, out_dtype)


def test_written_tags_decide_the_same_facts(four):
    scene = four[1]
    facts = decide(scene, SceneOptions(sensor="pleiades"))
    again = decide(scene, tags=FusedTags("o.tif", facts.tags()))
    assert (again.sensor, again.bits, again.sensor_source) == (facts.sensor, facts.bits, FROM_TAGS)
    assert again.warnings == ()
    other = decide(scene, tags=FusedTags("o.tif", {TAG_RATIO: str(scene.ratio * 2)}))
    (w,) = other.warnings
    assert TAG_RATIO in w and f"ratio {scene.ratio}" in w


# -------------------------------------------------------------------------- reference
def _float_cube(path, like: str, bands: int) -> str:
    with rasterio.open(like) as ds:
        prof = dict(ds.profile, dtype="float64", count=bands)
        arr = ds.read().astype(np.float64)
    with rasterio.open(path, "w", **prof) as out:
        out.write(arr)
    return str(path)


def test_reference_rules(four, tmp_path):
    s, _ = four
    gt = _float_cube(tmp_path / "gt.tif", s.ms[0], 4)
    with rasterio.open(gt) as g:
        none = FusedTags("f.tif", {})
        with pytest.raises(OptionError, match="--ratio R"):
            decide_reference(gt, g, None, None, none)
        with pytest.raises(OptionError, match="--bit-depth L"):
            decide_reference(gt, g, None, 4, none)
        with pytest.raises(OptionError, match="--ratio 0 must be a positive integer"):
            decide_reference(gt, g, None, 0, none)
        tags = FusedTags("f.tif", {TAG_RATIO: "4", TAG_BIT_DEPTH: "11", TAG_SENSOR: "ikonos"})
        tagged = decide_reference(gt, g, None, None, tags)
        assert (tagged.ratio, tagged.bits, tagged.sensor.name) == (4, 11, "ikonos")
        assert (tagged.sensor_source, tagged.bit_depth.source) == (FROM_TAGS, FROM_TAGS)
        assert tagged.ms_gains == get_sensor("ikonos").gains(4)
        explicit = decide_reference(gt, g, SceneOptions("quickbird", 12), 2, tags)
        assert (explicit.ratio, explicit.bits, explicit.sensor.name) == (2, 12, "quickbird")
        assert len(explicit.warnings) == 2  # the sensor and the bit depth contradict the tags
        preset = decide_reference(gt, g, SceneOptions("quickbird"), None, none)
        assert (preset.ratio, preset.bits) == (get_sensor("quickbird").ratio, 11)
        with pytest.raises(OptionError, match="--bit-depth 40 must be an integer from 1 to 32"):
            decide_reference(gt, g, SceneOptions(bit_depth=40), 4, none)


# ------------------------------------------------------------- fuse and evaluate agree
@pytest.mark.parametrize("sensor", [None, "pleiades"])
def test_fuse_and_evaluate_decide_the_same(eight, tmp_path, sensor):
    s, _ = eight
    out = tmp_path / "fused.tif"
    fused = fuse_files(s.pan, s.ms, str(out), FuseOptions(method="brovey", sensor=sensor))
    report = evaluate_methods(s.pan, s.ms, ["exp"], protocol="full", sensor=sensor, tile=64)
    proto = report["protocol"]
    assert proto["sensor"] == fused.sensor == (sensor or "worldview2")
    assert fused.bit_depth is not None and proto["bit_depth"] == fused.bit_depth
    assert proto["bit_depth_source"] == fused.bit_depth_source
    want_source = "option" if sensor else FROM_DETECTION
    assert proto["sensor_source"] == want_source
    assert fused.sensor_source == (FROM_SENSOR_OPTION if sensor else FROM_DETECTION)
    # the output's tags carry the decision to evaluate --fused
    again = evaluate_fused(str(out), s.pan, s.ms, tile=64)["protocol"]
    assert (again["sensor"], again["bit_depth"]) == (fused.sensor, fused.bit_depth)
    assert again["sensor_source"] == again["bit_depth_source"] == FROM_TAGS
    assert again["ms_gains"] == proto["ms_gains"]


def test_training_pairs_take_fuse_bit_depth(four):
    from raster.pairs import PairSpec, read_training_pairs

    s, scene = four
    sensor = get_sensor("generic")
    pairs = read_training_pairs([PairSpec(s.pan, s.ms[0], "a")], sensor)
    facts = decide(scene, SceneOptions(sensor))
    assert facts.bits is not None and pairs.bit_depth == facts.bits
    assert pairs.band_names is None  # no descriptions and no table names for 4 bands
    named = read_training_pairs([PairSpec(s.pan, s.ms[0], "a")], get_sensor("ikonos"))
    assert named.band_names == list(get_sensor("ikonos").band_names)
