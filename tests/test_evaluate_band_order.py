"""Reduced-resolution runs use the MS's own band order (its descriptions) for the gains
and weights, as fuse does: the degraded pair's files carry no descriptions."""

from __future__ import annotations

import numpy as np
import rasterio

from quality.evaluate import evaluate_methods

ORDER = ("blue", "green", "red", "nir")


def _described(src: str, dst: str, perm: list[int]) -> str:
    with rasterio.open(src) as ds:
        profile, data = ds.profile, ds.read()
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data[perm])
        for k, i in enumerate(perm, start=1):
            out.set_band_description(k, ORDER[i])
    return dst


def test_permuted_bands_score_the_same_at_reduced_resolution(make_scene, tmp_path):
    paths = make_scene(pan_shape=(400, 400), ratio=4, bands=4, seed=11)
    straight = _described(paths.ms[0], str(tmp_path / "ms_bgrn.tif"), [0, 1, 2, 3])
    permuted = _described(paths.ms[0], str(tmp_path / "ms_nrgb.tif"), [3, 2, 1, 0])
    scores = []
    for ms in (straight, permuted):
        report = evaluate_methods(
            paths.pan, ms, ["mtf-glp", "gihs"], protocol="reduced", sensor="quickbird",
            bit_depth=16,
        )  # fmt: skip
        scores.append({r["method"]: r for r in report["results"]})
    for method in ("mtf-glp", "gihs"):
        a, b = scores[0][method], scores[1][method]
        for key in ("ergas", "sam", "psnr"):  # invariant to the band order
            assert np.isclose(a[key], b[key], rtol=1e-9, atol=1e-12), (method, key, a, b)
