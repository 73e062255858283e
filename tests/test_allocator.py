"""The heap policy of long tile loops (tiling.allocator): freed memory is reused."""

from __future__ import annotations

import sys
import textwrap

import pytest

import tiling.executor
from tests.probe import run_python
from tiling.fuse import FuseOptions, fuse_files

PROBE = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from tiling.allocator import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    def cycle():
        blocks = [np.ones(3 << 20) for _ in range(4)]  # 4 x 24 MiB, under the mmap ceiling
        del blocks
    cycle()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        cycle()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_reuses_pages_instead_of_faulting_them_again():
    def faults(mode: str) -> int:
        return int(run_python(PROBE, mode).split()[-1])

    kept, default = faults("keep"), faults("default")
    assert kept * 10 < default, (kept, default)


def test_classical_fuse_keeps_freed_memory(make_scene, tmp_path, monkeypatch):
    """The classical engine asks for the policy before its tile loop, as the deep one does."""
    calls = []
    monkeypatch.setattr(tiling.executor, "keep_freed_memory", lambda: calls.append(1) or True)
    scene = make_scene(pan_shape=(96, 80), ratio=4, bands=4, seed=3)
    fuse_files(scene.pan, scene.ms, str(tmp_path / "o.tif"), FuseOptions(method="brovey"))
    assert calls, "classical fuse did not set the heap policy"
