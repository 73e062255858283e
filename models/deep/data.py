"""Training data by Wald's protocol: degraded (PAN, MS) pairs whose target is the original MS.

No full-resolution ground truth exists, so (Wald, Ranchin & Mangolini, PE&RS 1997; the
training set-up of PNN, PanNet, DiCNN, FusionNet and LAGNet) every pair is degraded by
the ratio with :func:`physics.degrade.wald_pair` - MS MTF-filtered with the sensor's
gains and decimated, PAN shrunk by imresize - the degraded MS is interpolated back with
the 23-tap EXP (:func:`physics.resample.interp23`, what the engine feeds the networks),
and the network learns to map (MS_LR up, PAN_LR) to the original MS. Patches are
``patch`` x ``patch`` pixels of that degraded PAN grid (= original MS pixels).

No flips or rotations: the EXP puts MS sample j at PAN pixel ratio*j + ratio/2, and
mirroring would move that phase by a pixel, teaching the networks a misregistration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from errors import OptionError
from physics.degrade import wald_pair
from physics.mtf import MTF_HALF
from physics.resample import interp23


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


def _as_pair(pan: np.ndarray, ms: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
    pan = np.asarray(pan)
    ms = np.asarray(ms)
    if pan.ndim == 3 and pan.shape[0] == 1:
        pan = pan[0]
    if ms.ndim == 2:
        ms = ms[None]
    if pan.ndim != 2 or ms.ndim != 3:
        raise OptionError(
            f"training pair {i}: PAN must be (H, W) and MS (B, h, w), got {pan.shape}, {ms.shape}"
        )
    return pan, ms


def prepare_scene(
    pan: np.ndarray,
    ms: np.ndarray,
    gains: Sequence[float],
    ratio: int,
    scale: float,
    name: str,
    nodata: float | None = None,
) -> WaldScene:
    """Degrade one (PAN, MS) pair by Wald's protocol and normalise it by ``scale``."""
    b, h, w = ms.shape
    ph, pw = pan.shape
    if abs(ph / ratio - h) > 1 or abs(pw / ratio - w) > 1:
        raise OptionError(
            f"training pair {name!r}: PAN {ph}x{pw} is not {ratio} x MS {h}x{w} "
            f"(check the ratio, or that PAN and MS cover the same area)"
        )
    h, w = min(h, ph // ratio), min(w, pw // ratio)
    ms = ms[:, :h, :w].astype(np.float64)
    pan = pan[: h * ratio, : w * ratio].astype(np.float64)

    bad_ms = ~np.isfinite(ms).all(axis=0)
    bad_pan = ~np.isfinite(pan)
    if nodata is not None:
        bad_ms |= (ms == nodata).any(axis=0)
        bad_pan |= pan == nodata
    ms = np.where(np.isfinite(ms), ms, 0.0)
    pan = np.where(np.isfinite(pan), pan, 0.0)

    pan_lr, ms_lr = wald_pair(pan, ms, list(gains), ratio)
    hh, ww = pan_lr.shape
    target = ms[:, :hh, :ww]
    ms_up = interp23(ms_lr, ratio)

    invalid = bad_ms[:hh, :ww] | bad_pan[: hh * ratio, : ww * ratio].reshape(
        hh, ratio, ww, ratio
    ).any(axis=(1, 3))
    invalid_sum = None
    if invalid.any():
        # nodata leaks through the MTF filter (41 taps) and the 23-tap EXP (11 LR pixels)
        grow = MTF_HALF + 12 * ratio
        invalid = ndimage.maximum_filter(invalid, size=2 * grow + 1, mode="constant")
        invalid_sum = np.zeros((hh + 1, ww + 1), dtype=np.int64)
        invalid_sum[1:, 1:] = invalid.cumsum(0).cumsum(1)
    inv = np.float32(1.0 / scale)
    return WaldScene(
        name=name,
        ms_up=(ms_up * inv).astype(np.float32),
        pan=(pan_lr * inv).astype(np.float32),
        target=(target * inv).astype(np.float32),
        invalid_sum=invalid_sum,
    )


def prepare_scenes(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    gains_for: object,
    ratio: int,
    scale: float,
    names: Sequence[str] | None = None,
    nodata: float | None = None,
) -> list[WaldScene]:
    """Degrade every pair; all must share one band count (``gains_for(n_bands)`` gives gains)."""
    if len(pairs) == 0:
        raise OptionError("no training pairs given")
    if names is not None and len(names) != len(pairs):
        raise OptionError(f"{len(names)} scene names for {len(pairs)} pairs")
    scenes: list[WaldScene] = []
    n_bands: int | None = None
    for i, (pan, ms) in enumerate(pairs):
        pan, ms = _as_pair(pan, ms, i)
        if n_bands is None:
            n_bands = ms.shape[0]
        elif ms.shape[0] != n_bands:
            raise OptionError(
                f"training pair {i} has {ms.shape[0]} MS bands, the first has {n_bands}: "
                f"every training scene needs the same bands"
            )
        name = names[i] if names is not None else f"pair{i:03d}"
        gains = gains_for(n_bands)  # type: ignore[operator]
        scenes.append(prepare_scene(pan, ms, gains, ratio, scale, name, nodata))
    return scenes


def split_scenes(
    scenes: list[WaldScene], val_fraction: float, seed: int
) -> tuple[list[WaldScene], list[WaldScene]]:
    """Hold out whole scenes for validation (never patches of a training scene).

    At least one validation scene when there are two or more scenes and
    ``val_fraction > 0``, and always at least one training scene.
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


def sample_batch(
    rng: np.random.Generator,
    scenes: list[WaldScene],
    probs: np.ndarray,
    patch: int,
    batch: int,
    tries: int = 50,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``batch`` random valid patches: (ms_up (N,B,p,p), pan (N,1,p,p), target (N,B,p,p)).

    Scenes are drawn in proportion to their number of patch positions (every position
    equally likely overall); a position touching nodata is redrawn.
    """
    ms_l, pan_l, tgt_l = [], [], []
    while len(ms_l) < batch:
        s = scenes[int(rng.choice(len(scenes), p=probs))]
        h, w = s.shape
        for _ in range(tries):
            y = int(rng.integers(0, h - patch + 1))
            x = int(rng.integers(0, w - patch + 1))
            if s.valid(y, x, patch):
                break
        else:
            continue
        win = (slice(y, y + patch), slice(x, x + patch))
        ms_l.append(s.ms_up[:, win[0], win[1]])
        pan_l.append(s.pan[None, win[0], win[1]])
        tgt_l.append(s.target[:, win[0], win[1]])
    return np.stack(ms_l), np.stack(pan_l), np.stack(tgt_l)


def grid_patches(
    scenes: list[WaldScene], patch: int, max_patches: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Deterministic validation set: non-overlapping valid patches, evenly thinned."""
    ms_l, pan_l, tgt_l = [], [], []
    for s in scenes:
        h, w = s.shape
        for y in range(0, h - patch + 1, patch):
            for x in range(0, w - patch + 1, patch):
                if s.valid(y, x, patch):
                    ms_l.append(s.ms_up[:, y : y + patch, x : x + patch])
                    pan_l.append(s.pan[None, y : y + patch, x : x + patch])
                    tgt_l.append(s.target[:, y : y + patch, x : x + patch])
    if not ms_l:
        return None
    keep = np.unique(np.linspace(0, len(ms_l) - 1, min(max_patches, len(ms_l))).astype(int))
    return (
        np.stack([ms_l[i] for i in keep]),
        np.stack([pan_l[i] for i in keep]),
        np.stack([tgt_l[i] for i in keep]),
    )
