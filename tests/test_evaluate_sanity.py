"""Sanity checks that can fail: a sharpening method must beat plain interpolation (EXP).

Issue 3: on the Landsat sample, EXP scores below GSA and MTF-GLP-FS on Q2n at reduced
resolution. Measured on the embedded sample (the land strip of LC80200392015216, PAN_LR
co-registered with GT): EXP 0.8764 < GSA 0.9272 < MTF-GLP-FS 0.9473.

The first sample crop (the scene's upper-left 600 x 600, almost all cumulus) did not
show it: MTF-GLP-FS 0.9572 > EXP 0.9569 > GSA 0.9360; nor does the whole shared scene,
two thirds cloud (MTF-GLP-FS 0.9408 > EXP 0.9251 > GSA 0.9116). Over clouds there is
little for the PAN to add, and Landsat 8's PAN (0.50-0.68 um) misses the blue and NIR
bands, so component substitution injects detail those bands lack. On WorldView-2, whose
PAN spans all four bands, GSA is the best method and EXP the worst (test below).

Reproduce: ``pansharp evaluate sample_scenes/landsat8/LC80200392015216_B8.tif
sample_scenes/landsat8/LC80200392015216_B{2,3,4,5}.tif -m exp -m gsa -m mtf-glp-fs
--protocol reduced``.
"""

from __future__ import annotations

from quality.evaluate import evaluate_methods
from tests.conftest import SAMPLE, SHARED, needs_shared

SAMPLE_PAN = str(SAMPLE / "LC80200392015216_B8.tif")
SAMPLE_MS = [str(SAMPLE / f"LC80200392015216_B{b}.tif") for b in (2, 3, 4, 5)]


def q2n_by_method(report: dict) -> dict[str, float]:
    return {r["method"]: r["q2n"] for r in report["results"] if r["scale"] == "reduced"}


def test_landsat_sample_exp_below_gsa_and_mtf_glp_fs():
    report = evaluate_methods(
        SAMPLE_PAN, SAMPLE_MS, ["exp", "gsa", "mtf-glp-fs"], protocol="reduced", tile=160
    )
    assert report["protocol"]["ratio"] == 2
    assert report["protocol"]["sensor"] == "landsat8"
    q = q2n_by_method(report)
    assert q["exp"] < q["gsa"]
    assert q["exp"] < q["mtf-glp-fs"]


def test_synthetic_exp_below_gsa_and_mtf_glp_fs(make_scene):
    """PAN = band mean of the truth, MS = its block average: the PAN holds the detail."""
    s = make_scene(pan_shape=(256, 256), ratio=2, bands=4, seed=2)
    report = evaluate_methods(s.pan, s.ms, ["exp", "gsa", "mtf-glp-fs"], protocol="reduced")
    q = q2n_by_method(report)
    assert q["exp"] < q["gsa"] - 0.01
    assert q["exp"] < q["mtf-glp-fs"] - 0.01
    assert all(0.5 < v < 1.0 for v in q.values())


@needs_shared("spacenet6_wv2_tiles")
def test_worldview2_exp_below_gsa_and_mtf_glp_fs():
    """WorldView-2 (SpaceNet 6, Maxar), ratio 4: the PAN spans all four MS bands."""
    d = SHARED / "spacenet6_wv2_tiles"
    report = evaluate_methods(
        str(d / "pan1.tif"),
        [str(d / "ms1.tif")],
        ["exp", "gsa", "mtf-glp-fs"],
        protocol="reduced",
        sensor="worldview2",
    )
    q = q2n_by_method(report)
    assert report["protocol"]["ratio"] == 4
    assert q["exp"] < q["mtf-glp-fs"] - 0.05
    assert q["exp"] < q["gsa"] - 0.05
