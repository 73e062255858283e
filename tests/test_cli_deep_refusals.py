"""Refusals around deep-model weights and options, in the bad-input corpus.

Weights whose tensors hold NaN/Inf or have the wrong shape are refused naming the file
and the tensor (and both shapes); a deep model without fitting shipped weights is
refused with exit 6; deep-model options given with a classical method are refused with
exit 2 instead of being ignored.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.deep.weights import save_tensors
from models.registry import create_model
from tests.badinput import Case, refusal_test
from tests.test_deep_weights import _card

TENSOR = "body.2.weight"  # DiCNN's middle 3x3 convolution, (64, 64, 3, 3)


def _scene(make_scene, ratio: int = 2, bands: int = 4):
    return make_scene(pan_shape=(64, 64), ratio=ratio, bands=bands, name=f"r{ratio}b{bands}")


def _weights(path: Path, edit) -> Path:
    """DiCNN weights with a valid card (landsat8, 4 bands, ratio 2), tensors edited."""
    torch.manual_seed(0)
    model = create_model("dicnn", n_bands=4)
    tensors = dict(model.state_dict())
    edit(tensors)
    save_tensors(path, tensors, _card(model, "dicnn").to_metadata())
    return path


def _deep_run(name: str, edit):
    def build(make_scene, tmp_path: Path):
        s = _scene(make_scene)
        w = _weights(tmp_path / name, edit)
        out = tmp_path / "out.tif"
        argv = ["fuse", s.pan, *s.ms, "-m", "dicnn", "--sensor", "landsat8"]
        return [*argv, "--weights", str(w), "--device", "cpu", "-o", str(out)], out

    return build


def _set(value: float):
    def edit(t: dict[str, torch.Tensor]) -> None:
        t[TENSOR][3, 5, 1, 2] = value

    return edit


def _reshape(t: dict[str, torch.Tensor]) -> None:
    t[TENSOR] = torch.zeros(64, 64, 5, 5)


def _drop(t: dict[str, torch.Tensor]) -> None:
    del t[TENSOR]


def _classical(*extra: str):
    def build(make_scene, tmp_path: Path):
        s = _scene(make_scene)
        out = tmp_path / "out.tif"
        return ["fuse", s.pan, *s.ms, "-m", "brovey", *extra, "-o", str(out)], out

    return build


def _no_shipped_weights(*extra: str, ratio: int = 4, bands: int = 4):
    """A ``bands``-band ratio-``ratio`` pair: by default WorldView-like, which only the
    Landsat-derived ratio-4 starting point fits (refused, naming --adapt)."""

    def build(make_scene, tmp_path: Path):
        s = _scene(make_scene, ratio=ratio, bands=bands)
        out = tmp_path / "out.tif"
        return ["fuse", s.pan, *s.ms, "-m", "fusionnet", *extra, "-o", str(out)], out

    return build


CASES = [
    Case("weights-nan", _deep_run("nan.safetensors", _set(float("nan"))), 6,
         ("nan.safetensors", repr(TENSOR), "1 NaN")),
    Case("weights-inf", _deep_run("inf.safetensors", _set(float("inf"))), 6,
         ("inf.safetensors", repr(TENSOR), "1 infinite")),
    Case("weights-wrong-shape", _deep_run("shape.safetensors", _reshape), 6,
         ("shape.safetensors", repr(TENSOR), "[64, 64, 5, 5]", "expected [64, 64, 3, 3]")),
    Case("weights-missing-tensor", _deep_run("short.safetensors", _drop), 6,
         ("short.safetensors", repr(TENSOR), "missing", "[64, 64, 3, 3]")),
    Case("deep-starting-point-only", _no_shipped_weights(), 6,
         ("fusionnet", "fusionnet_landsat-r4.safetensors", "--adapt", "--weights")),
    Case("deep-no-shipped-weights", _no_shipped_weights(ratio=3, bands=3), 6,
         ("fusionnet", "ratio 2", "--weights")),
    Case("deep-shipped-weights-other-ratio", _no_shipped_weights("--sensor", "landsat8"), 6,
         ("fusionnet_landsat8.safetensors", "ratio 4", "--weights")),
    Case("classical-weights", _classical("--weights", "w.safetensors"), 2,
         ("--weights", "-m brovey", "takes no weights")),
    Case("classical-device", _classical("--device", "cpu"), 2,
         ("--device", "takes no weights")),
    Case("classical-device-default-typed", _classical("--device", "auto"), 2,
         ("--device", "takes no weights")),
    Case("classical-batch-size", _classical("--batch-size", "4"), 2,
         ("--batch-size", "takes no weights")),
    Case("classical-precision", _classical("--precision", "fp16"), 2,
         ("--precision", "takes no weights")),
    Case("classical-overlap", _classical("--overlap", "8"), 2,
         ("--overlap", "takes no weights")),
    Case("classical-several-deep-options", _classical("--weights", "w.st", "--overlap", "8"), 2,
         ("--weights and --overlap", "drop them")),
]  # fmt: skip

test_refused = refusal_test(CASES)


def test_classical_run_without_deep_options_still_works(make_scene, tmp_path, capsys):
    """The refusal is about the options, not the method: the same run without them works."""
    from tests.cli import run_cli

    argv, out = _classical()(make_scene, tmp_path)
    code, _, err = run_cli([*argv, "-q", "--tile", "32"], capsys)
    assert code == 0, err
    assert out.exists()
