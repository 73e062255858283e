"""Running Python code in a fresh interpreter at the repository root, for the tests.

Fresh, because what these tests measure is process-wide and one-way: modules imported,
the peak RSS, the allocator's settings, page faults.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    """``python -c CODE ARGS...``'s stdout; a failing probe fails the test with its stderr."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout
