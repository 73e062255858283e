"""Running the CLI in-process and checking the one-line error contract, for the tests."""

from __future__ import annotations

from pansharp_cli.main import main


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """``pansharp ARGS`` through the console-script entry point: (exit code, stdout, stderr)."""
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_line_error(code: int, err: str, *needles: str) -> str:
    """Assert a failed run printed exactly one 'pansharp: error:' line containing needles."""
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("pansharp: error:")
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]
