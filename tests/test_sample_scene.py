"""Every method on the embedded Landsat 8 sample, the networks with their shipped
weights (no --weights): valid, in range, sharper than EXP."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from models.registry import REGISTRY, model_names
from tests.conftest import SAMPLE
from tiling.fuse import FuseOptions, fuse_files

PAN = str(SAMPLE / "LC80200392015216_B8.tif")
MS = [str(SAMPLE / f"LC80200392015216_B{b}.tif") for b in (2, 3, 4, 5)]
METHODS = model_names()


@pytest.fixture(scope="module")
def exp_detail(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "exp.tif"
    fuse_files(PAN, MS, str(out), FuseOptions(method="exp", dtype="float32"))
    with rasterio.open(out) as o:
        return _detail_corr(o.read())


def _detail_corr(fused: np.ndarray) -> float:
    """Mean correlation of the fused bands' high-pass with the PAN's high-pass."""
    from scipy.ndimage import uniform_filter

    with rasterio.open(PAN) as p:
        pan = p.read(1).astype(np.float64)
    hp = pan - uniform_filter(pan, 5)
    cs = []
    for b in fused.astype(np.float64):
        hb = b - uniform_filter(b, 5)
        cs.append(np.corrcoef(hb[20:-20, 20:-20].ravel(), hp[20:-20, 20:-20].ravel())[0, 1])
    return float(np.mean(cs))


# KNOWN DEFECT (issue 13, open): the shipped NODiff Landsat 8 weights write a pixel of 0
# on the sample: the NIR of a dark pond (row 87, col 575; 5143 DN in the MS) comes out
# at -51 DN in float32, i.e. interpolation minus 8 / g, the sampler's x0 clip, at every
# step count from 1 to 20; its pseudo-SR U alone gives -78 there. NODiff's full-scale
# detail is too strong (NIR std of fused - EXP: 552 DN, FusionNet 231, KSDiff 210) while
# its reduced-scale scores are the best (Q2n 0.923). Strict, so the fix shows here.
_NODIFF_ZEROS = pytest.mark.xfail(strict=True, reason="nodiff writes zero pixels (issue 13)")


@pytest.mark.parametrize(
    "method",
    [pytest.param(m, marks=_NODIFF_ZEROS) if m == "nodiff" else m for m in METHODS if m != "exp"],
)
def test_sample_scene(tmp_path, method, exp_detail):
    out = tmp_path / "o.tif"
    fuse_files(PAN, MS, str(out), FuseOptions(method=method))
    with rasterio.open(out) as o:
        fused = o.read()
        tags = o.tags()
        assert o.dtypes[0] == "uint16" and o.count == 4
        assert tags["PANSHARP_SENSOR"] == "landsat8"
    if "weights" in REGISTRY[method].info.run_options:  # the shipped Landsat 8 file
        assert tags["PANSHARP_WEIGHTS"] == f"{method}_landsat8.safetensors"
    assert fused.max() < 65535 and fused.min() > 0, "saturated or zeroed pixels"
    # the MS is reproduced at its own scale (block mean within 10 % on average) ...
    ms = np.stack([rasterio.open(p).read(1) for p in MS]).astype(np.float64)
    h, w = (ms.shape[1] - 1), (ms.shape[2] - 1)  # MS pixel j covers PAN 2j + 1 +- 1
    core = fused[:, 1 : 2 * h + 1, 1 : 2 * w + 1].astype(np.float64)
    blocks = core.reshape(4, h, 2, w, 2).mean((2, 4))
    rel = np.abs(blocks - ms[:, :h, :w]).mean() / ms.mean()
    assert rel < 0.1, f"{method}: spectral distortion {rel:.3f}"
    # ... and the PAN's detail is injected (more than interpolation carries). Not asked
    # of the networks: trained at reduced resolution on one scene for minutes, they add
    # less full-resolution detail (0.545-0.634 here against EXP's 0.551;
    # models/deep/weights/README.md has their scores)
    if "weights" not in REGISTRY[method].info.run_options:
        assert _detail_corr(fused) > exp_detail + 0.1
