#!/usr/bin/env python3
"""PreMix-H on one held-out Landsat 7 crop, its equalisation tables from the scene (what
``fuse`` does) or kept from training (the card's), scored by ``pansharp evaluate``.

    python3 models/deep/weights/premix_h_tables.py scene31 [--train-tables]

Why: the shipped file was trained with the training set's pooled tables and is fused
with each scene's own; the gap between the two runs measures that mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CROPS = ROOT.parent / "shared" / "data" / "landsat7_crops"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("crop", help="crop name, e.g. scene31")
    ap.add_argument("--train-tables", action="store_true", help="keep the card's tables")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import models.deep.premix as premix
    from pansharp_cli.main import main as cli

    if args.train_tables:
        premix.PreMixH.set_equalisation = lambda self, ms_hist, pan_hist: None
    weights = ROOT / "models" / "deep" / "weights" / "premix-h_landsat7.safetensors"
    report = Path(tempfile.mkdtemp(prefix="pansharp_he_")) / "report.json"
    pan, ms = CROPS / f"{args.crop}_pan.tif", CROPS / f"{args.crop}_ms.tif"
    cmd = ["evaluate", str(pan), str(ms), "--ratio", "2", "--sensor", "landsat7"]
    cmd += ["--protocol", "reduced", "-q", "--json", str(report), "-m", "premix-h"]
    try:
        cli([*cmd, "--weights", f"premix-h={weights}"])
    except SystemExit as exc:
        if exc.code:
            return int(exc.code)
    r = json.loads(report.read_text())["results"][0]
    tables = "training" if args.train_tables else "scene"
    print(args.crop, tables, {k: round(r[k], 4) for k in ("q2n", "sam", "ergas", "psnr")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
