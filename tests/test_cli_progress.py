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


def test_fuse_imports_torch_before_the_freeze_only_for_deep_models():
    """A deep model's torch is imported before the bar freezes the imports (so its
    objects are frozen too); a classical method never pays for importing torch."""
    from tests.probe import run_python

    code = (
        "import sys; from pansharp_cli.fuse import _import_torch_if_deep as f; "
        "f(sys.argv[1]); print('torch' in sys.modules)"
    )
    assert run_python(code, "brovey").strip() == "False"
    assert run_python(code, "no-such-method").strip() == "False"
    assert run_python(code, "fusionnet").strip() == "True"
