"""The facts of a scene that every run decides once: sensor, bit depth, band names, weights.

``fuse``, ``evaluate`` and ``train`` must agree on what a scene *is* before any pixel is
fused: which sensor preset gives the MTF gains, which bit depth L bounds the DN
(outputs are clipped to 2^L - 1, PSNR/SSIM peak at 2^L - 1, networks divide by it),
what the bands are called, which pseudo-PAN weights sum them. A weights file trained
on 11-bit data and applied with a 16-bit normalisation, or an image fused with one
sensor's gains and scored with another's, is silently wrong; so the rules live here,
in one place, and :func:`decide` applies them in one order:

- **sensor**: the option (``--sensor``), else the ``PANSHARP_SENSOR`` tag of a file
  ``pansharp fuse`` wrote (:class:`FusedTags`, ``evaluate --fused``/``--reference``),
  else detected from the inputs' metadata (:func:`physics.sensors.detect_sensor`: a
  Landsat MTL beside the files, satellite tags, an 8- or 6-band MS), else ``generic``;
- **bit depth** (:class:`raster.radiometry.BitDepth`): ``--bit-depth``, else the
  ``PANSHARP_BIT_DEPTH`` tag, else :func:`raster.radiometry.decide_bit_depth` (NBITS,
  the sensor preset, the MS data type or maximum);
- **band names** of the output: each band's description, else the sensor's name for it
  (:meth:`physics.sensors.Sensor.names_for`: a 4-band WorldView-2 product is blue,
  green, red, NIR1);
- **pseudo-PAN weights** (``--band-weights``, one per MS band, else the sensor's in the
  image's band order) and **MTF gains** at Nyquist of the MS bands and the PAN.

An option that contradicts a tag wins, and a warning says so (``SceneFacts.warnings``);
an unreadable tag is ignored with a warning. A reference-only evaluation (``evaluate
--reference GT FUSED``) has no PAN/MS scene: :func:`decide_reference` applies the same
sensor and tag precedence to the reference file, with the reference's own bit-depth
and ratio rules (documented there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from errors import OptionError, UnknownNameError
from models.base import FuseContext
from physics.sensors import Sensor, detect_sensor, get_sensor
from raster.radiometry import (
    BitDepth,
    decide_bit_depth,
    input_nodata,
    may_be_invalid,
    nodata_for_output,
)
from raster.scene import Scene

TAG_SENSOR = "PANSHARP_SENSOR"
TAG_BIT_DEPTH = "PANSHARP_BIT_DEPTH"
TAG_RATIO = "PANSHARP_RATIO"

# sources of the sensor (``sensor_source``) and of a bit depth that the tags decided; the
# bit depth's other sources are raster.radiometry's (``--bit-depth``, ``NBITS metadata``...)
FROM_SENSOR_OPTION = "--sensor"
FROM_BIT_DEPTH_OPTION = "--bit-depth"
FROM_TAGS = "fused tags"
FROM_DETECTION = "detected"
FROM_GENERIC = "generic"
#: the bit depth of a decision that skipped it (``headers_only``: no pixel read)
NOT_DECIDED = "not decided (headers only)"


@dataclass(frozen=True)
class SceneOptions:
    """What the user said about the scene: ``--sensor`` (a name, or a preset already
    looked up), ``--bit-depth``, ``--band-weights`` (one per MS band); None: decide."""

    sensor: str | Sensor | None = None
    bit_depth: int | None = None
    band_weights: Sequence[float] | None = None


@dataclass(frozen=True)
class FusedTags:
    """The metadata tags of a file ``pansharp fuse`` wrote, and its path (for warnings)."""

    path: str
    tags: Mapping[str, str] = field(default_factory=dict)

    def value(self, key: str) -> str:
        return str(self.tags.get(key, "")).strip()


@dataclass(frozen=True)
class SceneFacts:
    """The decided facts of one scene (see the module docstring for the rules).

    ``sensor_source`` is one of ``--sensor``, ``fused tags``, ``detected``, ``generic``;
    ``bit_depth.source`` names its rule the same way. ``band_names`` are the output's
    band descriptions, ``descriptions`` the input's. ``warnings`` come from the tags.
    """

    sensor: Sensor
    sensor_source: str
    bit_depth: BitDepth
    ratio: int
    n_bands: int
    dtype: str
    descriptions: tuple[str | None, ...]
    band_names: tuple[str | None, ...]
    weights: tuple[float, ...]
    ms_gains: tuple[float, ...]
    pan_gain: float
    input_nodata: float | None = None
    may_be_invalid: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def bits(self) -> int | None:
        """The bit depth L, None for no clipping beyond the data type."""
        return self.bit_depth.bits

    @property
    def max_value(self) -> float | None:
        """The largest valid DN, 2^L - 1 (None without a bit depth)."""
        return float(2**self.bits - 1) if self.bits else None

    def context(self, options: Mapping[str, Any] | None = None) -> FuseContext:
        """What every tile of a method run shares (:class:`models.base.FuseContext`)."""
        return FuseContext(
            ratio=self.ratio,
            n_bands=self.n_bands,
            ms_gains=self.ms_gains,
            pan_gain=self.pan_gain,
            weights=self.weights,
            dtype=self.dtype,
            bit_depth=self.bits,
            max_value=self.max_value,
            options=dict(options or {}),
        )

    def output_nodata(self, out_dtype: str) -> float | None:
        """Nodata of an output of type ``out_dtype`` (:mod:`raster.radiometry`'s rule)."""
        return nodata_for_output(self.input_nodata, self.may_be_invalid, out_dtype)

    def tags(self) -> dict[str, str]:
        """The tags ``fuse`` writes so that ``evaluate`` decides as it did (:class:`FusedTags`)."""
        out = {TAG_SENSOR: self.sensor.name, TAG_RATIO: str(self.ratio)}
        if self.bits:
            out[TAG_BIT_DEPTH] = str(self.bits)
        return out

    def card_band_names(self) -> list[str] | None:
        """The band names a weights card records: the descriptions when every band has a
        distinct one, else the sensor's table when it has one name per band, else None."""
        descr = list(self.descriptions)
        if all(descr) and len(set(descr)) == len(descr):
            return [str(d) for d in descr]
        if len(self.sensor.band_names) == self.n_bands:
            return list(self.sensor.band_names)
        return None


def decide(
    scene: Scene,
    options: SceneOptions | None = None,
    tags: FusedTags | None = None,
    headers_only: bool = False,
) -> SceneFacts:
    """The facts of ``scene`` by the module's rules, in their order: sensor, bit depth,
    then the band names, weights and gains that follow from the sensor.

    ``tags``: a fused file's tags, between the options and the metadata. ``headers_only``
    skips the bit depth (it may read the MS to find its maximum): ``bit_depth`` is then
    ``BitDepth(None, NOT_DECIDED)``. Errors name the flag (``--sensor``, ``--bit-depth``,
    ``--band-weights``).
    """
    opts = options or SceneOptions()
    warnings: list[str] = []
    sensor, source = choose_sensor(opts.sensor, tags, lambda: detected(scene), warnings)
    if headers_only:
        depth = BitDepth(None, NOT_DECIDED)
    else:
        depth = choose_bit_depth(
            opts.bit_depth,
            tags,
            lambda explicit: decide_bit_depth(scene, sensor, explicit),
            warnings,
        )
    if tags is not None:
        tagged = tags.value(TAG_RATIO)
        if tagged.isdigit() and int(tagged) != scene.ratio:
            warnings.append(
                f"the {TAG_RATIO} tag of {tags.path} is {tagged} but the PAN/MS pair "
                f"has ratio {scene.ratio}: the file was fused from another pair"
            )
    return facts_of(scene, sensor, depth, opts.band_weights, source, tuple(warnings))


def facts_of(
    scene: Scene,
    sensor: Sensor,
    bit_depth: BitDepth,
    band_weights: Sequence[float] | None = None,
    sensor_source: str = FROM_SENSOR_OPTION,
    warnings: tuple[str, ...] = (),
) -> SceneFacts:
    """The facts that follow from a decided sensor and bit depth: band names, weights
    (``--band-weights``, checked against the band count) and gains in the image's band
    order (:meth:`physics.sensors.Sensor.band_order`, from the MS descriptions)."""
    n = scene.n_bands
    descr = list(scene.descriptions)
    if band_weights is not None:
        if len(band_weights) != n:
            raise OptionError(
                f"--band-weights has {len(band_weights)} values but the MS has {n} bands; "
                f"give {n} comma-separated weights"
            )
        weights = tuple(float(w) for w in band_weights)
    else:
        weights = sensor.weights_for(descr)
    names = sensor.names_for(n, descr)
    return SceneFacts(
        sensor=sensor,
        sensor_source=sensor_source,
        bit_depth=bit_depth,
        ratio=scene.ratio,
        n_bands=n,
        dtype=scene.dtype,
        descriptions=tuple(descr),
        band_names=tuple(d or m for d, m in zip(descr, names, strict=True)),
        weights=weights,
        ms_gains=sensor.gains_for(descr),
        pan_gain=sensor.pan_gnyq,
        input_nodata=input_nodata(scene),
        may_be_invalid=may_be_invalid(scene),
        warnings=warnings,
    )


def detected(scene: Scene) -> Sensor | None:
    """The sensor the inputs' metadata names (None: nothing identifies it)."""
    paths = [Path(p) for p in [scene.pan_path, *scene.ms_paths]]
    return detect_sensor(paths, scene.tags, scene.n_bands)


def choose_sensor(
    option: str | Sensor | None,
    tags: FusedTags | None,
    detect: Callable[[], Sensor | None],
    warnings: list[str],
) -> tuple[Sensor, str]:
    """The sensor and its source: the option, else the ``PANSHARP_SENSOR`` tag (the
    sensor ``pansharp fuse`` used), else ``detect()``, else generic. An option that
    contradicts the tag wins and a warning says so."""
    tagged = _tagged_sensor(tags, warnings) if tags is not None else None
    if option:
        chosen = option if isinstance(option, Sensor) else get_sensor(option)
        if tags is not None and tagged is not None and tagged.name != chosen.name:
            warnings.append(
                f"--sensor {chosen.name} overrides the {TAG_SENSOR} tag of {tags.path} "
                f"({tagged.name}, the sensor it was fused with); scored with {chosen.name}"
            )
        return chosen, FROM_SENSOR_OPTION
    if tagged is not None:
        return tagged, FROM_TAGS
    found = detect()
    if found is not None:
        return found, FROM_DETECTION
    return get_sensor("generic"), FROM_GENERIC


def _tagged_sensor(tags: FusedTags, warnings: list[str]) -> Sensor | None:
    tag = tags.value(TAG_SENSOR)
    if not tag:
        return None
    try:
        return get_sensor(tag)
    except UnknownNameError:
        warnings.append(
            f"the {TAG_SENSOR} tag of {tags.path} names an unknown sensor {tag!r}; ignored"
        )
        return None


def choose_bit_depth(
    option: int | None,
    tags: FusedTags | None,
    rules: Callable[[int | None], BitDepth],
    warnings: list[str],
) -> BitDepth:
    """``--bit-depth`` (checked by ``rules(option)``), else the ``PANSHARP_BIT_DEPTH`` tag,
    else ``rules(None)`` (metadata, sensor, data type). An option that contradicts the
    tag wins and a warning says so."""
    tagged = _tagged_bit_depth(tags, warnings) if tags is not None else None
    if option is not None:
        chosen = rules(option)
        if tags is not None and tagged is not None and tagged != chosen.bits:
            warnings.append(
                f"--bit-depth {chosen.bits} overrides the {TAG_BIT_DEPTH} tag of "
                f"{tags.path} ({tagged})"
            )
        return chosen
    if tagged is not None:
        return BitDepth(tagged, FROM_TAGS)
    return rules(None)


def _tagged_bit_depth(tags: FusedTags, warnings: list[str]) -> int | None:
    tag = tags.value(TAG_BIT_DEPTH)
    if not tag:
        return None
    if tag.isdigit() and 1 <= int(tag) <= 32:
        return int(tag)
    warnings.append(f"the {TAG_BIT_DEPTH} tag of {tags.path} is {tag!r}, not 1..32; ignored")
    return None


# --------------------------------------------------------------------------- reference
def decide_reference(
    path: str,
    ds: Any,
    options: SceneOptions | None,
    ratio: int | None,
    tags: FusedTags,
) -> SceneFacts:
    """The facts of a reference-only evaluation: the GT ``ds`` (an open rasterio dataset
    at ``path``) and the fused file's ``tags``; there is no PAN/MS pair.

    - sensor: as :func:`decide`, detected from the reference's own tags and MTL (not
      from its band count: a reference is any cube);
    - ratio (ERGAS's): ``--ratio``, else the ``PANSHARP_RATIO`` tag, else the sensor's;
    - bit depth: ``--bit-depth`` (1 to 32), else the tag, else the reference's NBITS,
      else for integers the sensor's (if it fits the type) or the type's width, for
      floats the sensor's; otherwise an error asking for ``--bit-depth``;
    - MS gains: the sensor table's first B entries (quality.md), in file band order.
    """
    opts = options or SceneOptions()
    warnings: list[str] = []
    gtags = dict(ds.tags())
    sensor, source = choose_sensor(
        opts.sensor, tags, lambda: detect_sensor([Path(path)], gtags), warnings
    )
    r = _reference_ratio(ratio, tags, sensor)
    depth = choose_bit_depth(
        opts.bit_depth,
        tags,
        lambda explicit: _reference_bit_depth(explicit, ds, sensor, path),
        warnings,
    )
    n = int(ds.count)
    dt = np.dtype(ds.dtypes[0])
    return SceneFacts(
        sensor=sensor,
        sensor_source=source,
        bit_depth=depth,
        ratio=r,
        n_bands=n,
        dtype=dt.name,
        descriptions=tuple(ds.descriptions),
        band_names=tuple(ds.descriptions),
        weights=sensor.band_weights(n),
        ms_gains=sensor.gains(n),
        pan_gain=sensor.pan_gnyq,
        input_nodata=ds.nodata,
        may_be_invalid=dt.kind == "f",
        warnings=tuple(warnings),
    )


def _reference_ratio(ratio: int | None, tags: FusedTags, sensor: Sensor) -> int:
    if ratio is not None:
        if isinstance(ratio, bool) or int(ratio) != ratio or ratio < 1:
            raise OptionError(f"--ratio {ratio} must be a positive integer")
        return int(ratio)
    if tags.tags.get(TAG_RATIO, "").isdigit():
        return int(tags.tags[TAG_RATIO])
    if sensor.ratio:
        return int(sensor.ratio)
    raise OptionError(
        f"ERGAS needs the PAN/MS ratio and neither the fused file ({TAG_RATIO}) nor the "
        "sensor says it; give --ratio R"
    )


def _reference_bit_depth(explicit: int | None, ds: Any, sensor: Sensor, path: str) -> BitDepth:
    dt = np.dtype(ds.dtypes[0])
    if explicit is not None:
        if isinstance(explicit, bool) or not 1 <= int(explicit) <= 32:
            raise OptionError(f"--bit-depth {explicit} must be an integer from 1 to 32")
        return BitDepth(int(explicit), FROM_BIT_DEPTH_OPTION)
    nbits = ds.tags(ns="IMAGE_STRUCTURE").get("NBITS") or ds.tags(1, ns="IMAGE_STRUCTURE").get(
        "NBITS"
    )
    if nbits:
        return BitDepth(int(nbits), "reference metadata (NBITS)")
    if dt.kind in "iu":
        if sensor.bit_depth and sensor.bit_depth <= dt.itemsize * 8:
            return BitDepth(int(sensor.bit_depth), f"sensor {sensor.name}")
        return BitDepth(dt.itemsize * 8, "reference data type")
    if sensor.bit_depth:
        return BitDepth(int(sensor.bit_depth), f"sensor {sensor.name}")
    raise OptionError(
        f"the reference {path} is {dt.name} without an NBITS tag, so the bit depth for PSNR "
        "and SSIM (peak 2^L - 1) is unknown; give --bit-depth L or --sensor"
    )
