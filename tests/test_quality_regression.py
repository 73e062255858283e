"""Regression: the indexes of one seeded synthetic scene, stored in
``tests/data/quality_regression.json`` and recomputed to 1e-9.

The stored numbers were produced by this implementation and reviewed by hand against
quality.md; the test re-derives the simple ones (SAM, ERGAS, PSNR, QNR, HQNR) with a few
independent lines of numpy so a drift in the stored file cannot hide a wrong formula.
To regenerate after a deliberate change: ``python3 -m tests.test_quality_regression``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from physics.degrade import degrade_ms
from physics.resample import interp23
from quality import full_resolution_indexes, reduced_resolution_indexes

DATA = Path(__file__).resolve().parent / "data" / "quality_regression.json"
RATIO, BIT_DEPTH, GAINS = 4, 11, (0.34, 0.32, 0.30, 0.22)


def synthetic_scene() -> dict[str, np.ndarray]:
    """Seeded 4-band scene: GT, a plausible 'fusion' of it, PAN, MS and EXP."""
    rng = np.random.default_rng(20240531)
    b, h, w = 4, 128, 120
    shared = ndimage.gaussian_filter(rng.normal(size=(h, w)), 3) * 2500
    gt = np.stack(
        [
            600
            + 150 * k
            + (0.7 + 0.2 * k) * shared
            + ndimage.gaussian_filter(rng.normal(size=(h, w)), 1) * 120
            for k in range(b)
        ]
    )
    fused = 0.98 * np.roll(gt, 1, axis=2) + 10 + rng.normal(0, 15, gt.shape)
    pan = gt.mean(axis=0) + rng.normal(0, 8, (h, w))
    ms = degrade_ms(gt, GAINS, RATIO)
    exp = interp23(ms, RATIO)
    return {"gt": gt, "fused": fused, "pan": pan, "ms": ms, "exp": exp}


def compute() -> dict[str, dict[str, float]]:
    s = synthetic_scene()
    return {
        "reduced": reduced_resolution_indexes(s["fused"], s["gt"], RATIO, BIT_DEPTH),
        "full": full_resolution_indexes(s["gt"], s["pan"], s["ms"], s["exp"], RATIO, GAINS),
    }


def test_indexes_match_stored_values() -> None:
    stored = json.loads(DATA.read_text())
    now = compute()
    for protocol in ("reduced", "full"):
        assert set(now[protocol]) == set(stored[protocol])
        for key, value in stored[protocol].items():
            assert now[protocol][key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_stored_values_agree_with_independent_formulas() -> None:
    stored = json.loads(DATA.read_text())
    s = synthetic_scene()
    g = s["gt"][:, 20:-21, 20:-21]
    f = s["fused"][:, 20:-21, 20:-21]
    dot = np.sum(g * f, axis=0)
    cosang = dot / (np.linalg.norm(g, axis=0) * np.linalg.norm(f, axis=0))
    sam = np.degrees(np.mean(np.arccos(np.clip(cosang, -1, 1))))
    mse = ((f - g) ** 2).mean(axis=(1, 2))
    ergas = 100 / RATIO * math.sqrt(np.mean(mse / g.mean(axis=(1, 2)) ** 2))
    psnr = 10 * math.log10((2**BIT_DEPTH - 1) ** 2 / mse.mean())
    red, full = stored["reduced"], stored["full"]
    assert red["sam"] == pytest.approx(sam, rel=1e-9)
    assert red["ergas"] == pytest.approx(ergas, rel=1e-9)
    assert red["psnr"] == pytest.approx(psnr, rel=1e-9)
    assert full["qnr"] == pytest.approx((1 - full["d_lambda"]) * (1 - full["d_s"]), rel=1e-12)
    assert full["hqnr"] == pytest.approx((1 - full["d_lambda_k"]) * (1 - full["d_s"]), rel=1e-12)
    # a 1-pixel shift with noise: good but imperfect; the ordering of the indexes agrees
    assert 0.5 < red["q2n"] < 1 and 0.5 < red["q"] < 1 and 0.5 < red["ssim"] < 1
    assert 0.5 < red["scc"] < 1 and 0 < full["d_lambda"] < 0.2 and 0 < full["d_lambda_k"] < 0.2


if __name__ == "__main__":
    DATA.parent.mkdir(exist_ok=True)
    DATA.write_text(json.dumps(compute(), indent=2) + "\n")
    print(DATA.read_text())
