"""What the pixel values mean: bit depth, nodata, radiometric agreement, colour.

Rules a remote-sensing user expects, written once for ``fuse``, ``evaluate`` and
``train`` (which apply them through :mod:`raster.scene_facts`, with the sensor):

- **Bit depth** L (the largest valid DN is 2^L - 1; outputs are clipped to it and
  the quality indexes scale by it): ``--bit-depth``, else the file's ``NBITS``
  (GDAL's IMAGE_STRUCTURE metadata), else the sensor preset's, else, for unsigned
  integers of the generic sensor, the smallest of 8, 10, 11, 12, 14 and 16 bits that
  holds the MS data (WorldView-2 products store 11-bit DNs in uint16 without NBITS).
  :class:`BitDepth` says which rule decided, for the summary and the JSON.
- **Nodata of the output**: the inputs' nodata value; else, when an input has a mask
  band or is a float raster (NaN is nodata unless the user says otherwise), the
  output type's default (0 unsigned, the minimum signed, NaN float).
- **Radiometric agreement**: PAN and MS whose bit depths or mean levels differ by more
  than a factor of 4 give a warning (an 8-bit PAN with a 16-bit MS made a Brovey image
  ten times too dark, silently).
- **Colour interpretation** from the band names, so that GDAL and QGIS show true colour.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import ColorInterp

from errors import OptionError

BIT_DEPTHS = (8, 10, 11, 12, 14, 16)
MISMATCH_FACTOR = 4.0


@dataclass(frozen=True)
class BitDepth:
    """The bit depth (None: no clipping beyond the data type) and the rule that set it."""

    bits: int | None
    source: str


def decide_bit_depth(scene, sensor, explicit: int | None) -> BitDepth:
    """The first rule of the module docstring that applies to ``scene``."""
    dt = np.dtype(scene.dtype)
    if explicit is not None:
        if explicit < 1 or (dt.kind in "iu" and explicit > dt.itemsize * 8):
            raise OptionError(
                f"--bit-depth {explicit} does not fit the MS data type {dt.name}; "
                f"give a value from 1 to {dt.itemsize * 8}"
            )
        return BitDepth(explicit, "--bit-depth")
    if scene.bit_depth:
        return BitDepth(scene.bit_depth, "NBITS metadata")
    if dt.kind != "u":
        return BitDepth(None, f"{dt.name} data (no clipping beyond the type)")
    bits = dt.itemsize * 8
    if sensor.bit_depth:  # the generic preset has none
        if sensor.bit_depth <= bits:
            return BitDepth(sensor.bit_depth, f"sensor preset {sensor.name}")
        return BitDepth(bits, f"data type {dt.name} (preset {sensor.name} exceeds it)")
    peak = ms_maximum(scene)
    for b in BIT_DEPTHS:
        if b <= bits and peak <= 2**b - 1:
            return BitDepth(b, f"MS data maximum {peak:g}")
    return BitDepth(bits, f"data type {dt.name}")


def ms_maximum(scene) -> float:
    """Largest valid MS value, read block by block (nodata and masked pixels excluded).

    The MS is a 1/ratio^2 share of the scene's pixels: at 8000^2 (ratio 4) reading it
    once more is a fraction of the fusion's own read.
    """
    peak = 0.0
    for path in dict.fromkeys(b.path for b in scene.bands):
        with rasterio.open(path) as ds:
            nodata = scene.ms_nodata
            for _, window in ds.block_windows(1):
                data = ds.read(window=window)
                if nodata is not None:
                    data = np.where(data == nodata, 0, data)
                if data.size:
                    peak = max(peak, float(data.max()))
    return peak


def output_nodata(scene, out_dtype: str) -> float | None:
    """Nodata of the output: the inputs', else the type default when some input pixels
    can be invalid (mask band, or float input where NaN means nodata)."""
    return nodata_for_output(input_nodata(scene), may_be_invalid(scene), out_dtype)


def input_nodata(scene) -> float | None:
    """The inputs' declared nodata value: the MS's, else the PAN's."""
    return scene.ms_nodata if scene.ms_nodata is not None else scene.pan_nodata


def may_be_invalid(scene) -> bool:
    """Whether input pixels can be invalid without a nodata value: a mask band, or a
    float input (NaN is nodata unless the user says otherwise)."""
    float_input = np.dtype(scene.dtype).kind == "f" or np.dtype(scene.pan_dtype).kind == "f"
    return bool(scene.has_mask or float_input)


def nodata_for_output(nodata: float | None, invalid: bool, out_dtype: str) -> float | None:
    """The inputs' ``nodata`` when ``out_dtype`` holds it, else the type default when
    input pixels can be ``invalid`` (see :func:`output_nodata`), else None."""
    if nodata is not None and not fits(nodata, out_dtype):
        nodata = None
    if nodata is None and invalid:
        nodata = default_nodata(out_dtype)
    return nodata


def default_nodata(dtype: str) -> float:
    """0 unsigned, the minimum signed, NaN float."""
    dt = np.dtype(dtype)
    if dt.kind == "u":
        return 0
    if dt.kind == "i":
        return float(np.iinfo(dt).min)
    return float("nan")


def fits(value: float, dtype: str) -> bool:
    """Whether ``value`` is representable in ``dtype`` (integers: whole and in range)."""
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return float(value).is_integer() and info.min <= value <= info.max
    return True


class LevelStats:
    """Sums and counts of the valid PAN and MS values the tiles read (thread-safe).

    Accumulated by the tile reader over each tile's core, so it costs one masked sum per
    tile and no extra read; the means compare the two inputs' radiometric levels.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pan_sum = 0.0
        self.pan_n = 0
        self.ms_sum = 0.0
        self.ms_n = 0
        self.valid = 0

    def add(self, pan: np.ndarray, ms: np.ndarray, valid: np.ndarray) -> None:
        """Add a tile core's valid pixels, every 4th row and column (a 1/16 sample is
        plenty for a factor-4 test and keeps the cost per 512^2 tile near 0.1 ms)."""
        n_valid = int(np.count_nonzero(valid))  # every pixel: "no valid pixel" is exact
        if n_valid == 0:
            return
        pan, ms, valid = pan[::4, ::4], ms[:, ::4, ::4], valid[::4, ::4]
        n = int(np.count_nonzero(valid))
        ps = float(np.sum(pan, where=valid, dtype=np.float64))
        ms_s = float(sum(np.sum(b, where=valid, dtype=np.float64) for b in ms))
        with self._lock:
            self.pan_sum += ps
            self.pan_n += n
            self.ms_sum += ms_s
            self.ms_n += n * ms.shape[0]
            self.valid += n_valid

    def totals(self) -> tuple[float, int, float, int, int]:
        """The sums and counts as plain numbers (to send from another process)."""
        return self.pan_sum, self.pan_n, self.ms_sum, self.ms_n, self.valid

    def merge(self, totals: tuple[float, int, float, int, int]) -> None:
        """Add another reader's :meth:`totals` (a row range fused elsewhere)."""
        with self._lock:
            self.pan_sum += totals[0]
            self.pan_n += totals[1]
            self.ms_sum += totals[2]
            self.ms_n += totals[3]
            self.valid += totals[4]

    def means(self) -> tuple[float, float] | None:
        if self.pan_n == 0 or self.ms_n == 0:
            return None
        return self.pan_sum / self.pan_n, self.ms_sum / self.ms_n


def radiometry_warnings(scene, stats: LevelStats | None) -> list[str]:
    """Warnings when PAN and MS disagree in bit depth or mean level by more than 4x."""
    out: list[str] = []
    ms_bits = scene.bit_depth or _type_bits(scene.dtype)
    pb = scene.pan_bit_depth or _type_bits(scene.pan_dtype)
    if ms_bits and pb and 2 ** abs(ms_bits - pb) > MISMATCH_FACTOR:
        out.append(
            f"PAN {scene.pan_path} is {pb}-bit and the MS {ms_bits}-bit: the fused image "
            "keeps the MS levels with the PAN's detail scaled wrongly; rescale one of them "
            "(gdal_translate -scale) or check the files"
        )
    means = stats.means() if stats is not None else None
    if not out and means is not None:
        pan_mean, ms_mean = means
        lo, hi = sorted((abs(pan_mean), abs(ms_mean)))
        if lo > 0 and hi / lo > MISMATCH_FACTOR:
            out.append(
                f"PAN {scene.pan_path} (mean {pan_mean:.4g}) and MS (mean {ms_mean:.4g}) "
                f"differ by a factor of {hi / lo:.1f} in level: different radiometric "
                "scaling? rescale one of them (gdal_translate -scale) or check the files"
            )
    return out


def _type_bits(dtype: str) -> int | None:
    dt = np.dtype(dtype)
    return dt.itemsize * 8 if dt.kind in "iu" else None


_COLOURS = {
    "red": ColorInterp.red,
    "green": ColorInterp.green,
    "blue": ColorInterp.blue,
}
_RGB = set(_COLOURS.values())


def colour_from_names(names: list[str | None], original: list | None = None) -> list[ColorInterp]:
    """Per-band colour interpretation: red, green and blue from the band names, else the
    input's own red/green/blue, else undefined (one band alone: gray), so that GDAL and
    QGIS compose true colour from a blue, green, red, NIR product."""
    orig = list(original or []) + [None] * len(names)
    out = []
    for n, o in zip(names, orig, strict=False):
        c = _COLOURS.get(str(n).strip().lower()) if n else None
        out.append(c if c is not None else (o if o in _RGB else ColorInterp.undefined))
    if len(out) == 1 and out[0] == ColorInterp.undefined:
        return [ColorInterp.gray]
    return out
