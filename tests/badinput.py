"""The bad-input corpus: every refused input, checked the same way.

A :class:`Case` builds a command line from the seeded scene factory and says what the
refusal must look like: the exit code, words the one stderr line must contain (the
file or the option that fixes it), and that nothing is left at OUT or beside it (no
file named like OUT, no hidden temporary folder). Each area's test module lists its
cases and turns them into one parametrized test with :func:`refusal_test`, so the
corpus grows by adding a case, never by writing a new assertion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cli import one_line_error, run_cli

# builder(make_scene, tmp_path) -> (argv, OUT); OUT may be None when nothing is written
Builder = Callable[[Callable[..., Any], Path], tuple[list[str], Path | None]]


@dataclass(frozen=True)
class Case:
    id: str
    build: Builder
    code: int
    needles: tuple[str, ...] = ()


def leftovers(out: Path) -> list[Path]:
    """Files at OUT or named after it in its folder (the writers' hidden temporaries)."""
    folder = out.parent
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name == out.name or p.name.startswith("." + out.name)]


def check_refusal(case: Case, make_scene: Callable[..., Any], tmp_path: Path, capsys) -> str:
    """Run the case and assert the refusal contract; returns the error line."""
    argv, out = case.build(make_scene, tmp_path)
    before = _snapshot(out)
    code, _, err = run_cli(argv, capsys)
    line = one_line_error(code, err, *case.needles)
    assert code == case.code, f"exit code {code}, expected {case.code}: {line}"
    if out is not None:
        assert _snapshot(out) == before, f"{case.id}: OUT or its folder changed: {leftovers(out)}"
    return line


def _snapshot(out: Path | None) -> dict[str, tuple[int, int]]:
    """Name -> (size, mtime_ns) of OUT and its temporaries: a refusal must change none."""
    if out is None:
        return {}
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in leftovers(out)}


def refusal_test(cases: list[Case]) -> Callable[..., None]:
    """One parametrized pytest function over ``cases`` (assign it to ``test_...``)."""

    @pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])
    def test(case: Case, make_scene, tmp_path, capsys) -> None:
        check_refusal(case, make_scene, tmp_path, capsys)

    return test
