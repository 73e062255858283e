"""Torch's CPU allocator runs on transparent huge pages when pansharp imports it."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.probe import run_python

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")

PROBE = textwrap.dedent(
    """
    import resource
    from tiling.process import apply_process_settings
    apply_process_settings()  # the CLI entry's settings, before torch (tiling.process)
    import torch
    from models.registry import create_model
    torch.set_num_threads(1)
    m = create_model("fusionnet", n_bands=4).eval()
    x, p = torch.rand(1, 4, 512, 512), torch.rand(1, 1, 512, 512)
    with torch.inference_mode():
        m(x, p)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        m(x, p)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(env_value: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if env_value is not None:
        env["THP_MEM_ALLOC_ENABLE"] = env_value
    return int(run_python(PROBE, env=env).split()[-1])


@pytest.mark.skipif(
    not THP.exists() or "[never]" in THP.read_text(), reason="no transparent huge pages here"
)
def test_forward_pass_runs_on_huge_pages_unless_the_user_says_no():
    default = _faults(None)  # pansharp's default
    disabled = _faults("0")  # the user's own setting wins
    assert default * 4 < disabled, (default, disabled)
