"""The ``pansharp`` process: console script and ``python -m pansharp_cli``.

The command starts without Python's cyclic garbage collector. Start-up is imports
(numpy, rasterio, typer and pydantic, torch for deep models: ~800 modules), and the
collector kept walking the growing heap of module objects, none of which is garbage:
0.42-0.53 s from the interpreter's start to the progress bar of an 8000^2 fuse with it,
0.34-0.35 s without (3 runs each). The command's long work runs with it again:
:func:`pansharp_cli.progress.freeze_imports`, called as the work begins, freezes what
the imports made and re-enables the collector; a command that never gets there (a
listing, an error) ends soon anyway.
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    try:
        from pansharp_cli.main import main as run

        run()
    finally:
        gc.enable()


if __name__ == "__main__":
    main()
