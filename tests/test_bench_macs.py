"""benchmarks/deep_models.count_macs against MACs counted by hand on known layers."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "deep_models.py"


def load_script() -> ModuleType:
    """The benchmark is a script, not a package: load it from its path."""
    spec = importlib.util.spec_from_file_location("bench_deep_models", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_count_macs_matches_hand_count() -> None:
    torch.set_num_threads(1)
    count_macs = load_script().count_macs
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 10x10 out: 8*100 elements x 3*3*3
        nn.ReLU(),  # element-wise: not counted
        nn.Conv2d(8, 8, 3, padding=1, groups=4),  # 8*100 x (8/4)*3*3
        nn.Conv2d(8, 2, (1, 3), padding=(0, 1)),  # 2*100 x 8*1*3
        nn.Flatten(),
        nn.Linear(200, 5),  # 5 x 200
    )
    hand = 800 * 27 + 800 * 18 + 200 * 24 + 5 * 200
    assert count_macs(net, [torch.rand(1, 3, 10, 10)]) == hand
    # batch 2 doubles every output, so every count
    assert count_macs(net, [torch.rand(2, 3, 10, 10)]) == 2 * hand


def test_diffusion_models_are_counted_through_one_sampler_step() -> None:
    """A diffusion network's forward is a training stage (KSDiff's needs the reference):
    the size column runs one DDIM step of ``generate`` instead, so it has a count, and
    torch's count (which sees the functional kernels too) is not below the hooks'."""
    torch.set_num_threads(1)
    script = load_script()
    for name in ("nodiff", "ksdiff"):
        size = script.model_size(name)
        assert size["macs"] > 0, name
        assert size["macs_aten"] >= size["macs"], name
