"""``--batch-size auto`` plans with tiling.deep.patch_bytes: it must not underestimate."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from models.registry import model_names

ROOT = Path(__file__).resolve().parents[1]
DEEP = model_names(family="deep")

# Peak RSS growth between a 256^2 and a 512^2 forward pass, per added pixel, in a fresh
# interpreter (ru_maxrss only grows, so each model needs its own process).
PROBE = textwrap.dedent(
    """
    import resource, sys, torch
    from models.registry import create_model
    from tiling.deep import patch_bytes
    torch.set_num_threads(1)
    m = create_model(sys.argv[1], n_bands=4).eval()
    def run(p):
        with torch.inference_mode():
            m(torch.rand(1, 4, p, p), torch.rand(1, 1, p, p))
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    base = run(256)
    peak = run(512)
    print((peak - base) / (512 * 512 - 256 * 256), patch_bytes(m, 4, (1, 1), 4))
    """
)


@pytest.mark.parametrize("name", DEEP)
def test_patch_bytes_bounds_the_measured_forward_peak(name):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, name], cwd=ROOT, capture_output=True, text=True, check=True
    )
    measured, estimate = (float(x) for x in out.stdout.split())
    assert measured > 0
    assert estimate >= measured, f"{name}: {measured:.0f} B/px measured > {estimate:.0f} planned"
