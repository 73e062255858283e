"""Streaming accumulators give the whole-image numbers (to 1e-9 relative).

Scenes whose evaluated area is not a multiple of 32 (so Q2n mirrors rows and columns
across tile borders), tiles of odd sizes arriving in shuffled order, and the tile
contract violations the accumulators must refuse.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from errors import QualityError
from physics.resample import interp23
from quality import (
    FullAccumulator,
    ReducedAccumulator,
    full_resolution_indexes,
    full_tiles,
    pan_lowpass,
    pan_lowpass_halo,
    reduced_resolution_indexes,
    reduced_tiles,
)


def cube(seed: int, bands: int, rows: int, cols: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.normal(size=(bands, rows, cols)), (0, 4, 4)) * 4000
    return (
        900.0
        + smooth
        + ndimage.gaussian_filter(rng.normal(size=(bands, rows, cols)), (0, 1, 1)) * 200
    )


def feed_reduced(
    acc: ReducedAccumulator, fused: np.ndarray, gt: np.ndarray, tiles, seed: int
) -> None:
    order = np.random.default_rng(seed).permutation(len(tiles))
    for k in order:
        r0, r1, c0, c1 = tiles[k].array
        acc.add(fused[:, r0:r1, c0:c1], gt[:, r0:r1, c0:c1], r0, c0, tiles[k].core)


@pytest.mark.parametrize(
    ("bands", "rows", "cols", "tile"),
    [(4, 157, 139, (45, 37)), (3, 150, 122, (64, 64)), (8, 112, 108, (23, 70))],
)
def test_reduced_streamed_equals_whole(
    bands: int, rows: int, cols: int, tile: tuple[int, int]
) -> None:
    gt = cube(bands, bands, rows, cols)
    fused = np.roll(gt, 1, axis=2) + np.random.default_rng(1).normal(0, 30, gt.shape)
    whole = reduced_resolution_indexes(fused, gt, ratio=4, bit_depth=12)
    acc = ReducedAccumulator(gt.shape, ratio=4, bit_depth=12)
    feed_reduced(acc, fused, gt, reduced_tiles(rows, cols, *tile), seed=bands)
    assert acc.complete
    streamed = acc.result()
    assert set(streamed) == set(whole)
    for key in whole:
        assert streamed[key] == pytest.approx(whole[key], rel=1e-9, abs=0), key
    assert streamed["q2n"] == whole["q2n"]  # integer-exact block sums: bit-identical


def test_reduced_whole_scene_in_one_call() -> None:
    gt = cube(7, 4, 80, 90)
    fused = gt * 1.01
    acc = ReducedAccumulator(gt.shape, 2, 11)
    acc.add(fused, gt, 0, 0)
    whole = reduced_resolution_indexes(fused, gt, 2, 11)
    assert acc.result() == pytest.approx(whole, rel=1e-12)


@pytest.mark.parametrize(
    ("ratio", "rows", "cols", "tile"), [(4, 136, 168, (64, 96)), (2, 130, 98, (32, 64))]
)
def test_full_streamed_equals_whole(
    ratio: int, rows: int, cols: int, tile: tuple[int, int]
) -> None:
    b = 4
    rng = np.random.default_rng(ratio)
    ms = cube(10 + ratio, b, rows // ratio, cols // ratio)
    exp = interp23(ms, ratio)
    pan = exp.mean(axis=0) + cube(20, 1, rows, cols)[0] * 0.1
    fused = exp + 0.5 * (pan - exp.mean(axis=0)) + rng.normal(0, 5, exp.shape)
    gains = [0.34, 0.32, 0.30, 0.22]
    whole = full_resolution_indexes(fused, pan, ms, exp, ratio, gains)
    acc = FullAccumulator(fused.shape, ratio, gains)
    tiles = full_tiles(rows, cols, *tile, ratio)
    for k in rng.permutation(len(tiles)):
        r0, r1, c0, c1 = tiles[k].array
        acc.add(
            fused[:, r0:r1, c0:c1], pan[r0:r1, c0:c1], exp[:, r0:r1, c0:c1], r0, c0, tiles[k].core
        )
    streamed = acc.result()
    for key in whole:
        assert streamed[key] == pytest.approx(whole[key], rel=1e-9, abs=0), key
    assert streamed["d_lambda_k"] == whole["d_lambda_k"]


# --------------------------------------------------------------------------- contract


def test_reduced_refuses_missing_overlapping_and_short_halo_tiles() -> None:
    gt = cube(3, 2, 100, 100)
    tiles = reduced_tiles(100, 100, 50, 50)
    acc = ReducedAccumulator(gt.shape, 4, 11)
    feed_reduced(acc, gt, gt, tiles[:-1], 0)
    assert not acc.complete
    with pytest.raises(QualityError, match="missing"):
        acc.result()
    r0, r1, c0, c1 = tiles[0].array
    with pytest.raises(QualityError, match="twice|overlap"):
        acc.add(gt[:, r0:r1, c0:c1], gt[:, r0:r1, c0:c1], r0, c0, tiles[0].core)
    fresh = ReducedAccumulator(gt.shape, 4, 11)
    with pytest.raises(QualityError, match="halo"):  # core without its 31-pixel halo
        fresh.add(gt[:, :50, :50], gt[:, :50, :50], 0, 0)
    with pytest.raises(QualityError, match="not inside the arrays"):
        fresh.add(gt[:, :50, :50], gt[:, :50, :50], 0, 0, core=(0, 60, 0, 50))
    with pytest.raises(QualityError, match="bands"):
        fresh.add(gt[:1], gt[:1], 0, 0)


def test_full_refuses_misaligned_cores_and_short_halo() -> None:
    ratio = 4
    fused = cube(4, 2, 128, 128)
    pan = fused.mean(axis=0)
    acc = FullAccumulator(fused.shape, ratio, [0.3, 0.3])
    with pytest.raises(QualityError, match="aligned"):
        acc.add(fused, pan, fused, 0, 0, core=(16, 48, 0, 32))
    with pytest.raises(QualityError, match="halo"):
        acc.add(fused[:, :64, :64], pan[:64, :64], fused[:, :64, :64], 0, 0, core=(0, 32, 0, 32))
    with pytest.raises(QualityError, match="multiple of the ratio"):
        acc.add(fused[:, 2:, :], pan[2:, :], fused[:, 2:, :], 2, 0, core=(96, 128, 0, 32))
    with pytest.raises(QualityError, match="missing"):
        acc.result()
    with pytest.raises(QualityError, match="multiples of 32"):
        full_tiles(128, 128, 48, 32, ratio)


@pytest.mark.parametrize("ratio", [2, 4, 8])
def test_pan_lowpass_halo_is_enough_and_a_smaller_one_is_not(ratio: int) -> None:
    """PAN_lp of core + documented halo equals the whole-scene PAN_lp on the core."""
    halo = pan_lowpass_halo(ratio)
    size = 2 * (halo + 32) + 64
    pan = 1000 + np.random.default_rng(ratio).normal(0, 100, (size, size))
    whole = pan_lowpass(pan, ratio)
    core = slice(halo + 32, halo + 96)
    for margin, exact in ((halo, True), (4 * ratio, False)):
        part = pan[
            core.start - margin : core.stop + margin, core.start - margin : core.stop + margin
        ]
        lp = pan_lowpass(part, ratio)[margin:-margin, margin:-margin]
        err = np.abs(lp - whole[core, core]).max()
        assert (err < 1e-9) == exact, (margin, err)
