"""The CLI's progress bar: the library's callback drives it; entering it freezes imports."""

from __future__ import annotations

import gc

import pytest

from pansharp_cli.progress import progress_bar


@pytest.mark.parametrize("quiet", [True, False])
def test_the_first_report_freezes_the_imported_objects(quiet, capsys):
    """Objects alive when the long work starts (imported modules, and torch with the
    network for a deep model, imported by the library after the bar was entered) leave
    the collector's generations (gc.freeze), so collections during the run and at exit
    skip them. The work starts with the library's first progress report."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        with progress_bar(quiet=quiet) as progress:
            assert gc.get_freeze_count() == 0, "frozen before the work started"
            late = [[] for _ in range(100)]  # what the library makes before the work
            progress("fuse", 1, 2)
            frozen = gc.get_freeze_count()
            assert frozen > 1000
            collectable = {id(o) for o in gc.get_objects()}  # the permanent generation aside
            assert not any(id(x) in collectable for x in late), "made before work, not frozen"
            progress("fuse", 2, 2)
            assert gc.get_freeze_count() == frozen, "froze again on a later report"
    finally:
        gc.unfreeze()
    capsys.readouterr()


def test_a_failure_erases_the_bar(capsys):
    """A refusal before any report leaves nothing of the bar; one midway leaves nothing
    either (rich's non-terminal final render and empty line are not written)."""
    for reports in (0, 2):
        try:
            with progress_bar(quiet=False) as progress:
                for done in range(reports):
                    progress("fuse", done, 10)
                raise ValueError("refused")
        except ValueError:
            pass
        finally:
            gc.unfreeze()
        assert capsys.readouterr().err == ""


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


def test_fuse_imports_torch_before_the_run_only_when_the_weights_fit(make_scene, tmp_path):
    """torch is imported before the run (outside its clock, without the collector) only
    for a deep model whose weights fit the scene; a classical method, an unknown name,
    or weights that do not fit (refused by the run, without torch) never import it."""
    from tests.probe import run_python

    ratio2 = make_scene(pan_shape=(64, 64), ratio=2, bands=4, name="r2")
    ratio4 = make_scene(pan_shape=(64, 64), ratio=4, bands=4, name="r4")
    code = (
        "import sys\n"
        "from pansharp_cli.fuse import _import_torch_if_deep as f\n"
        "from tiling.fuse import FuseOptions\n"
        "pan, ms, method = sys.argv[1:]\n"
        "f(pan, [ms], FuseOptions(method=method, sensor='landsat8'))\n"
        "print('torch' in sys.modules)\n"
    )
    for scene, method, imported in [
        (ratio2, "brovey", False),
        (ratio2, "no-such-method", False),
        (ratio4, "fusionnet", False),  # the shipped landsat8 weights are for ratio 2
        (ratio2, "fusionnet", True),  # ... and 4 bands: they fit
    ]:
        got = run_python(code, scene.pan, scene.ms[0], method).strip()
        assert got == str(imported), (method, scene.pan)
