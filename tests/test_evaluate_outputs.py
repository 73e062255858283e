"""evaluate's report files: never one of the inputs, written beside and published whole."""

from __future__ import annotations

import json
from pathlib import Path

from tests.badinput import Case, refusal_test
from tests.cli import run_cli


def _report_onto_input(flag: str, which: str):
    def build(make_scene, tmp: Path):
        s = make_scene(pan_shape=(128, 128), ratio=4, bands=4)
        target = s.pan if which == "pan" else s.ms[0]
        argv = ["evaluate", s.pan, *s.ms, "-m", "exp", "--protocol", "full", flag, target]
        return argv, Path(target)

    return build


CASES = [
    Case("csv-onto-the-ms", _report_onto_input("--csv", "ms"), 5, ("--csv", "input")),
    Case("json-onto-the-pan", _report_onto_input("--json", "pan"), 5, ("--json", "input")),
    Case(
        "quicklook-onto-the-ms",
        _report_onto_input("--quicklook", "ms"),
        5,
        ("--quicklook", "input"),
    ),
]

test_refused = refusal_test(CASES)


def test_reports_are_written_and_leave_no_temporaries(make_scene, tmp_path, capsys) -> None:
    s = make_scene(pan_shape=(128, 128), ratio=4, bands=4)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["evaluate", s.pan, *s.ms, "-m", "exp", "--protocol", "full"]
    argv += ["--json", str(out / "r.json"), "--csv", str(out / "r.csv")]
    argv += ["--quicklook", str(out / "q.png")]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["q.png", "r.csv", "r.json"]
    assert json.loads((out / "r.json").read_text())["results"]
    assert (out / "q.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
