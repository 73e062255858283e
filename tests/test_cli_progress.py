"""The CLI's progress bar: the library's callback drives it; entering it freezes imports."""

from __future__ import annotations

import gc

from pansharp_cli.progress import progress_bar


def test_entering_the_bar_freezes_the_imported_objects():
    """Objects alive before the long work (imported modules) leave the collector's
    generations (gc.freeze), so collections during the run and at exit skip them."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        with progress_bar(quiet=True) as progress:
            assert gc.get_freeze_count() > 1000
            progress("fuse", 1, 2)
    finally:
        gc.unfreeze()


def test_bar_accepts_phases_and_totals(capsys):
    try:
        with progress_bar(quiet=False) as progress:
            for done in (0, 5, 10):
                progress("fuse", done, 10)
            progress("unknown-phase", 0, 0)  # total 0 is shown as 1, never divides by 0
    finally:
        gc.unfreeze()
    err = capsys.readouterr().err
    assert "fusing" in err and "unknown-phase" in err
