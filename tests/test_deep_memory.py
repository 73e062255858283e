"""``--batch-size auto`` plans with models.deep.method.patch_bytes: it must not underestimate."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from models.registry import model_names
from tests.probe import run_python

DEEP = model_names(family="deep")
pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="needs Linux's /proc/self/status (VmHWM)"
)

# Peak RSS of a fresh interpreter that imports, builds the model and runs one forward
# pass of a P x P patch; the growth from P = 256 to P = 512, per added pixel, is the
# forward pass's own memory (one process per size: the high-water mark only grows). VmHWM,
# not ru_maxrss: a child's ru_maxrss also counts the RSS it had before exec, i.e. the
# forking pytest process's, which can exceed the probe's own peak.
PROBE = textwrap.dedent(
    """
    import re, sys, torch
    from models.registry import create_model
    from models.deep.method import patch_bytes
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = create_model(sys.argv[1], n_bands=4).eval()
    p = int(sys.argv[2])
    with torch.inference_mode():
        m(torch.rand(1, 4, p, p), torch.rand(1, 1, p, p))
    status = open("/proc/self/status").read()
    peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024
    print(peak, patch_bytes(m, 4, (1, 1), 4))
    """
)


def _probe(name: str, size: int) -> tuple[float, float]:
    peak, estimate = (float(x) for x in run_python(PROBE, name, str(size)).split())
    return peak, estimate


@pytest.mark.parametrize("name", DEEP)
def test_patch_bytes_bounds_the_measured_forward_peak(name):
    small, _ = _probe(name, 256)
    large, estimate = _probe(name, 512)
    measured = (large - small) / (512 * 512 - 256 * 256)
    assert measured > 0
    assert estimate >= measured, f"{name}: {measured:.0f} B/px measured > {estimate:.0f} planned"
