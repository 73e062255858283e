"""Training data by Wald's protocol: degraded (PAN, MS) pairs whose target is the original MS.

No full-resolution ground truth exists, so (Wald, Ranchin & Mangolini, PE&RS 1997; the
training set-up of PNN, PanNet, DiCNN, FusionNet and LAGNet) every pair is degraded by
the ratio with the two halves of :func:`physics.degrade.wald_pair` - MS MTF-filtered
with the sensor's gains and decimated (:func:`~physics.degrade.degrade_ms`), PAN shrunk
by imresize (:func:`~physics.degrade.degrade_pan`) - the degraded MS is interpolated
back with the 23-tap EXP (:func:`physics.resample.interp23`, what the engine feeds the
networks), and the network learns to map (MS_LR up, PAN_LR) to the original MS. Patches
are ``patch`` x ``patch`` pixels of that degraded PAN grid (= original MS pixels).

:func:`prepare_scene` degrades a whole scene in memory; the streaming sampler
(:mod:`models.deep.sampler`) degrades one window and its halo at a time with the same
block functions (:func:`degrade_ms_block`, :func:`degrade_pan_block`) and the same
nodata rule (:func:`nodata_reach`, :data:`PAN_REACH`), so both give the same patches.

No flips or rotations: the EXP puts MS sample j at PAN pixel ratio*j + ratio/2, and
mirroring would move that phase by a pixel, teaching the networks a misregistration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from scipy import ndimage

from errors import OptionError
from physics.degrade import degrade_ms, degrade_pan
from physics.mtf import MTF_HALF
from physics.resample import interp23

T = TypeVar("T")


#: One training patch: (ms_up (B, p, p), pan (1, p, p), target (B, p, p)), float32.
Patch = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class WaldScene:
    """One degraded pair, normalised to [0, 1], on the degraded PAN grid (h, w)."""

    name: str
    ms_up: np.ndarray  # (B, h, w) float32: interp23(MS_LR)
    pan: np.ndarray  # (h, w) float32: PAN_LR
    target: np.ndarray  # (B, h, w) float32: the original MS
    invalid_sum: np.ndarray | None  # (h+1, w+1) integral image of invalid pixels, or None

    @property
    def shape(self) -> tuple[int, int]:
        return self.pan.shape  # type: ignore[return-value]

    @property
    def n_bands(self) -> int:
        return int(self.ms_up.shape[0])

    def positions(self, patch: int) -> int:
        """Number of patch positions (top-left corners) in the scene."""
        h, w = self.shape
        return max(0, h - patch + 1) * max(0, w - patch + 1)

    def count_valid(self, patch: int) -> int:
        """Number of patch positions free of nodata (the scene's sampling weight)."""
        if self.positions(patch) == 0:
            return 0
        if self.invalid_sum is None:
            return self.positions(patch)
        s = self.invalid_sum
        win = s[patch:, patch:] - s[:-patch, patch:] - s[patch:, :-patch] + s[:-patch, :-patch]
        return int((win == 0).sum())

    def valid(self, y: int, x: int, patch: int) -> bool:
        """No nodata pixel (eroded by the filters' support) in the patch at (y, x)."""
        if self.invalid_sum is None:
            return True
        s = self.invalid_sum
        return (s[y + patch, x + patch] - s[y, x + patch] - s[y + patch, x] + s[y, x]) == 0

    def patch(self, y: int, x: int, patch: int) -> Patch | None:
        """The patch at (y, x) (views into the scene), or None if it touches nodata."""
        if not self.valid(y, x, patch):
            return None
        rows, cols = slice(y, y + patch), slice(x, x + patch)
        return self.ms_up[:, rows, cols], self.pan[None, rows, cols], self.target[:, rows, cols]


def nodata_reach(ratio: int) -> int:
    """How far (degraded-grid pixels) an invalid MS pixel spoils the degraded pair.

    It leaks through the MTF filter (41 taps, :data:`physics.mtf.MTF_HALF` = 20 pixels)
    and the 23-tap EXP (11 MS_LR pixels each side = 11 ``ratio`` pixels, plus the phase).
    """
    return MTF_HALF + 12 * ratio


#: How far (degraded-grid pixels) an invalid PAN block spoils PAN_LR: imresize(PAN, 1/r)
#: at pixel k reads PAN pixels k r - 1.5 r - 1.5 .. k r + 2.5 r + 0.5 (MATLAB's bicubic
#: widened by r), i.e. the blocks k - 2 .. k + 2; one more for safety.
PAN_REACH = 3


def wald_grid(
    pan_shape: tuple[int, int], ms_shape: tuple[int, int], ratio: int, name: str
) -> tuple[int, int]:
    """The degraded grid (h, w) of a pair: the MS pixels whose PAN block exists, cropped
    to whole multiples of ``ratio`` as :func:`physics.degrade.wald_pair` crops them.

    A PAN more than one MS pixel off ``ratio`` x MS is refused (wrong ratio or area).
    """
    h, w = ms_shape
    ph, pw = pan_shape
    if abs(ph / ratio - h) > 1 or abs(pw / ratio - w) > 1:
        raise OptionError(
            f"training pair {name!r}: PAN {ph}x{pw} is not {ratio} x MS {h}x{w} "
            f"(check the ratio, or that PAN and MS cover the same area)"
        )
    h, w = min(h, ph // ratio), min(w, pw // ratio)
    return h - h % ratio, w - w % ratio


def ms_invalid(ms: np.ndarray, nodata: float | None = None) -> np.ndarray:
    """(h, w) True where any band of the (B, h, w) MS is non-finite or ``nodata``."""
    bad = ~np.isfinite(ms).all(axis=0)
    if nodata is not None:
        bad |= (ms == nodata).any(axis=0)
    return bad


def pan_invalid(pan: np.ndarray, ratio: int, nodata: float | None = None) -> np.ndarray:
    """(h, w) True where the r x r PAN block of a degraded pixel holds an invalid value."""
    bad = ~np.isfinite(pan)
    if nodata is not None:
        bad |= pan == nodata
    h, w = pan.shape[0] // ratio, pan.shape[1] // ratio
    return bad[: h * ratio, : w * ratio].reshape(h, ratio, w, ratio).any(axis=(1, 3))


def degrade_ms_block(
    ms: np.ndarray, gains: Sequence[float], ratio: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """(ms_up, target) of a (B, h, w) MS block, h and w multiples of r, normalised.

    ms_up = interp23(decimate(MTF(MS))) / scale (:func:`physics.degrade.degrade_ms`, the
    MS half of :func:`physics.degrade.wald_pair`), target = MS / scale, both float32;
    non-finite values are zeroed first. The whole-scene path (:func:`prepare_scene`) and
    the streaming sampler (a window and its halo, :mod:`models.deep.sampler`) both call
    this, so they degrade by one rule.
    """
    ms = ms.astype(np.float64)
    ms = np.where(np.isfinite(ms), ms, 0.0)
    ms_up = interp23(degrade_ms(ms, list(gains), ratio), ratio)
    inv = np.float32(1.0 / scale)
    return (ms_up * inv).astype(np.float32), (ms * inv).astype(np.float32)


def degrade_pan_block(pan: np.ndarray, ratio: int, scale: float) -> np.ndarray:
    """PAN_LR = imresize(PAN, 1/r) / scale (:func:`physics.degrade.degrade_pan`) of a
    (h r, w r) PAN block, float32; non-finite values are zeroed first."""
    pan = pan.astype(np.float64)
    pan = np.where(np.isfinite(pan), pan, 0.0)
    inv = np.float32(1.0 / scale)
    return (degrade_pan(pan, ratio) * inv).astype(np.float32)


def prepare_scene(
    pan: np.ndarray,
    ms: np.ndarray,
    gains: Sequence[float],
    ratio: int,
    scale: float,
    name: str,
    nodata: float | None = None,
) -> WaldScene:
    """Degrade one whole (PAN, MS) pair by Wald's protocol and normalise it by ``scale``.

    A patch is valid when no invalid MS pixel lies within :func:`nodata_reach` of it
    and no invalid PAN block within :data:`PAN_REACH` (how far each spoils the inputs).
    """
    h, w = wald_grid(pan.shape, ms.shape[-2:], ratio, name)
    ms, pan = ms[:, :h, :w], pan[: h * ratio, : w * ratio]
    ms_up, target = degrade_ms_block(ms, gains, ratio, scale)
    pan_lr = degrade_pan_block(pan, ratio, scale)
    bad_ms, bad_pan = ms_invalid(ms, nodata), pan_invalid(pan, ratio, nodata)
    invalid_sum = None
    if bad_ms.any() or bad_pan.any():
        grow = nodata_reach(ratio)
        invalid = ndimage.maximum_filter(bad_ms, size=2 * grow + 1, mode="constant")
        invalid |= ndimage.maximum_filter(bad_pan, size=2 * PAN_REACH + 1, mode="constant")
        invalid_sum = np.zeros((h + 1, w + 1), dtype=np.int64)
        invalid_sum[1:, 1:] = invalid.cumsum(0).cumsum(1)
    return WaldScene(name=name, ms_up=ms_up, pan=pan_lr, target=target, invalid_sum=invalid_sum)


def split_scenes(scenes: Sequence[T], val_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Hold out whole scenes for validation (never patches of a training scene).

    At least one validation scene when there are two or more scenes and
    ``val_fraction > 0``, and always at least one training scene. ``scenes`` may be
    :class:`WaldScene` objects or any other per-scene items (the sampler's sources).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise OptionError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    n = len(scenes)
    n_val = 0
    if n >= 2 and val_fraction > 0:
        n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    order = np.random.default_rng(seed).permutation(n)
    val_idx = set(order[:n_val].tolist())
    train = [s for i, s in enumerate(scenes) if i not in val_idx]
    val = [s for i, s in enumerate(scenes) if i in val_idx]
    return train, val
