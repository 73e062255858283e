"""Windowed access to training pairs: arrays in memory, or PAN/MS files read window by window.

The streaming sampler (:mod:`models.deep.sampler`) asks a pair for one window of the
PAN and the matching window of the MS at a time, so a scene far larger than memory
trains with memory set by the batch. Both kinds answer the same two calls on the pair's
own pixel grids (PAN rows/cols, MS rows/cols, half-open):

- :class:`ArrayPair`: slices of (PAN (H, W), MS (B, h, w)) arrays, as given;
- :class:`FilePair`: rasterio windowed reads of the files, in the crop
  :mod:`raster.pairs` would read whole (georeferenced pairs in one geometry, cropped
  to the MS pixels whose PAN block is inside the PAN; ungeoreferenced ones aligned at
  the top-left corner), as float32 with NaN where the files hold nodata - the values
  :func:`raster.pairs.read_pair` gives, so streaming and whole-scene training agree.

GDAL's block cache is off for these reads (``GDAL_CACHEMAX`` 128 bytes, what ``fuse``
uses): windows are drawn at random, a cached block is rarely read twice, and the
default cache (5 % of the RAM) would let memory grow with the scene read.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from errors import GeometryError, OptionError
from physics.sensors import Sensor
from raster.pairs import PairSpec, SceneAgreement
from raster.pairs import _crop as crop_windows  # the crop read_pair uses (private there)
from raster.scene import Scene, open_scene

GDAL_CACHE_BYTES = 128  # no block cache (see the module docstring)


class PairReader(Protocol):
    """What the sampler needs of a training pair: shapes, and windows on demand."""

    name: str
    pan_shape: tuple[int, int]
    ms_shape: tuple[int, int]
    n_bands: int
    ms_dtype: np.dtype

    def read_pan(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """PAN rows [r0, r1) x cols [c0, c1), shape (r1 - r0, c1 - c0)."""
        ...

    def read_ms(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """MS rows [r0, r1) x cols [c0, c1) of every band, shape (B, r1 - r0, c1 - c0)."""
        ...

    def close(self) -> None: ...


class ArrayPair:
    """A (PAN, MS) pair already in memory, served through the windowed interface."""

    def __init__(self, pan: np.ndarray, ms: np.ndarray, name: str) -> None:
        pan, ms = np.asarray(pan), np.asarray(ms)
        if pan.ndim == 3 and pan.shape[0] == 1:
            pan = pan[0]
        if ms.ndim == 2:
            ms = ms[None]
        if pan.ndim != 2 or ms.ndim != 3:
            raise OptionError(
                f"training pair {name!r}: PAN must be (H, W) and MS (B, h, w), got "
                f"{pan.shape}, {ms.shape}"
            )
        self.pan, self.ms, self.name = pan, ms, name
        self.pan_shape: tuple[int, int] = (pan.shape[0], pan.shape[1])
        self.ms_shape: tuple[int, int] = (ms.shape[1], ms.shape[2])
        self.n_bands = ms.shape[0]
        self.ms_dtype = ms.dtype

    def read_pan(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return self.pan[r0:r1, c0:c1]

    def read_ms(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return self.ms[:, r0:r1, c0:c1]

    def close(self) -> None:
        pass


class FilePair:
    """A PAN/MS file pair read window by window; handles opened on first read."""

    def __init__(self, spec: PairSpec, scene: Scene) -> None:
        if scene.warp is not None:
            raise GeometryError(
                f"{spec.ms} is in another CRS than {spec.pan}; reproject it onto the PAN's "
                "CRS (gdalwarp) before training"
            )
        pan_win, ms_win, _ = crop_windows(scene)
        self.name = spec.name
        self.spec = spec
        self.ratio = scene.ratio
        self.n_bands = scene.n_bands
        self.ms_dtype = np.dtype(scene.dtype)
        self.pan_nodata = scene.pan_nodata
        self.ms_nodata = scene.ms_nodata
        self._pan_off = (int(pan_win.row_off), int(pan_win.col_off))
        self._ms_off = (int(ms_win.row_off), int(ms_win.col_off))
        self.pan_shape = (int(pan_win.height), int(pan_win.width))
        self.ms_shape = (int(ms_win.height), int(ms_win.width))
        self._handles: tuple[Any, Any] | None = None

    def _open(self) -> tuple[Any, Any]:
        if self._handles is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._handles = (rasterio.open(self.spec.pan), rasterio.open(self.spec.ms))
        return self._handles

    def _read(self, which: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        ds = self._open()[which]
        off = self._pan_off if which == 0 else self._ms_off
        window = Window(off[1] + c0, off[0] + r0, c1 - c0, r1 - r0)
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
            data = ds.read(1 if which == 0 else None, window=window).astype(np.float32)
        nodata = self.pan_nodata if which == 0 else self.ms_nodata
        if nodata is not None:
            data[data == nodata] = np.nan
        return data

    def read_pan(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return self._read(0, r0, r1, c0, c1)

    def read_ms(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return self._read(1, r0, r1, c0, c1)

    def close(self) -> None:
        if self._handles is not None:
            for ds in self._handles:
                ds.close()
            self._handles = None


@dataclass
class TrainingFiles:
    """File pairs ready for :func:`models.deep.train.train` and what the card should say."""

    pairs: list[FilePair]
    names: list[str]
    ratio: int
    bit_depth: int | None
    band_names: list[str] | None


def open_file_pairs(
    specs: list[PairSpec],
    sensor: Sensor,
    ratio: int | None = None,
    nodata: float | None = None,
    bit_depth: int | None = None,
) -> TrainingFiles:
    """Open (headers only) every pair; they follow the rules of
    :class:`raster.pairs.SceneAgreement`, as :func:`raster.pairs.read_training_pairs`
    does, without reading pixels."""
    pairs: list[FilePair] = []
    agreement = SceneAgreement(sensor, bit_depth)
    for spec in specs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            scene = open_scene(spec.pan, [spec.ms], ratio=ratio, nodata=nodata)
        agreement.add(spec, scene)
        pairs.append(FilePair(spec, scene))
    k = agreement.agreed_ratio()
    names = [s.name for s in specs]
    return TrainingFiles(pairs, names, k, agreement.bit_depth, agreement.band_names)
