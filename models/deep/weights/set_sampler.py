#!/usr/bin/env python3
"""Rewrite the sampler settings in a diffusion weights file's card (no retraining).

Sampler settings are the constructor arguments that training never reads
(``models.deep.staged.SAMPLER_SETTINGS``): ``window_ramp`` (blend ramp of the grid
windows) and ``default_steps`` (DDIM steps when ``--steps`` is not given, chosen from the
file's quality-against-steps curve, ``evaluate_steps.py``). The tensors are copied as
they are; the new card must still build the network (checked before anything is
written). Usage:

    python3 models/deep/weights/set_sampler.py FILE default_steps=1 [window_ramp=8] [-o OUT]

``default_steps=none`` removes the file's own default (the registry's applies again).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))


def parse(pair: str) -> tuple[str, int | None]:
    key, sep, value = pair.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{pair!r}: give NAME=VALUE")
    return key, None if value.lower() == "none" else int(value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("settings", nargs="+", type=parse, metavar="NAME=VALUE")
    ap.add_argument("-o", "--out", type=Path, help="write here (default: FILE in place)")
    args = ap.parse_args()
    from models.deep.weights import with_sampler_settings

    card = with_sampler_settings(args.file, args.out or args.file, dict(args.settings))
    changed = {k: card.kwargs.get(k) for k, _ in args.settings}
    print(f"{args.out or args.file}: {changed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
