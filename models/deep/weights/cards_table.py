#!/usr/bin/env python3
"""Print the Markdown table of the shipped weights' cards (models/deep/weights/README.md).

One row per ``*.safetensors`` here, read with :func:`models.deep.card.read_card`: steps,
wall seconds, epochs, warm start, validation (val L1, EXP's val L1, val PSNR) and size.
A file whose warm start is an earlier run of the same file name is marked "(second
run)" (train_shipped.sh names the first ``.NAME.first.safetensors``).
Usage: ``python3 models/deep/weights/cards_table.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from models.deep.card import read_card  # noqa: E402


def _num(value: object, digits: int) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def main() -> None:
    print("| file | steps | wall s | epochs | init from | val L1 | EXP val L1 | val PSNR dB | KB |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for path in sorted(p for p in HERE.glob("*.safetensors") if not p.name.startswith(".")):
        card = read_card(path)
        t, v = card.training, card.validation or {}
        init = t.get("init_from") or ""
        first = init.lstrip(".").replace(".first.", ".")  # train_shipped.sh's first run
        name = f"`{path.name}`" + (" (second run)" if first == path.name else "")
        print(
            f"| {name} | {card.steps} | {round(t.get('elapsed_s', 0))} | "
            f"{t.get('epochs', 0):.1f} | {f'`{init}`' if init else ''} | "
            f"{_num(v.get('val_l1'), 5)} | {_num(v.get('val_l1_exp'), 5)} | "
            f"{_num(v.get('val_psnr_db'), 2)} | {round(path.stat().st_size / 1024)} |"
        )


if __name__ == "__main__":
    main()
