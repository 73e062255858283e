"""Training objectives: lookup by name, WaldL1 == F.l1_loss, the loop asks the objective."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from errors import OptionError, UnknownNameError
from models.deep.objectives import (
    DEFAULT_OBJECTIVE,
    TrainBatch,
    WaldL1,
    get_objective,
    objective_names,
)
from models.deep.train import train, trainable_models
from models.registry import get_entry, model_names
from tests.cli import one_line_error, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pairs(n: int = 2, size: int = 40, ratio: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        ms = rng.uniform(300, 3000, (4, size, size)).astype(np.uint16)
        pan = np.kron(ms.mean(0), np.ones((ratio, ratio))) + rng.normal(0, 5, (size * 2,) * 2)
        out.append((pan.astype(np.uint16), ms))
    return out


def test_lookup_by_name_and_unknown_names_listed():
    assert DEFAULT_OBJECTIVE in objective_names()
    got = get_objective(" Wald-L1 ")
    assert isinstance(got, WaldL1) and got.name == "wald-l1" and got.data == "wald"
    assert "target" in got.needs
    mine = WaldL1()
    assert get_objective(mine) is mine  # an Objective object passes through
    with pytest.raises(UnknownNameError) as info:
        get_objective("wald-l3")
    msg = str(info.value)
    assert isinstance(info.value, OptionError)
    assert "--objective" in msg and "'wald-l3'" in msg
    assert all(n in msg for n in objective_names())


def test_wald_l1_is_f_l1_loss_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(3, 4, 16, 16, generator=g, requires_grad=True)
    target = torch.rand(3, 4, 16, 16, generator=g)
    batch = TrainBatch(torch.rand(3, 4, 16, 16), torch.rand(3, 1, 16, 16), target)
    ours = WaldL1().loss(pred, batch)
    ref = F.l1_loss(pred, target)
    assert torch.equal(ours, ref)
    (g1,) = torch.autograd.grad(ours, pred)
    (g2,) = torch.autograd.grad(ref, pred)
    assert torch.equal(g1, g2)
    with pytest.raises(ValueError, match="target"):
        WaldL1().loss(pred, TrainBatch(batch.ms_up, batch.pan))


@dataclass
class Recording:
    """A Wald objective that records what the loop hands it (and returns L1)."""

    name: str = "recording"
    data: str = "wald"
    needs: tuple[str, ...] = ("ms_up", "pan", "target")
    card: str = "L1 (recorded)"
    calls: list[tuple[tuple[int, ...], float]] = field(default_factory=list)

    def loss(self, prediction: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
        assert batch.target is not None and prediction.dtype == torch.float32
        assert prediction.shape == batch.target.shape == batch.ms_up.shape
        out = F.l1_loss(prediction, batch.target)
        self.calls.append((tuple(prediction.shape), float(out.detach())))
        return out


def test_the_loop_asks_the_objective(tmp_path):
    rec = Recording()
    events: list[dict] = []
    res = train(
        "dicnn", _pairs(), "landsat8", 2, tmp_path / "w.safetensors", steps=4, patch=16,
        batch_size=3, bit_depth=12, progress_every=1, checkpoint_every=100, objective=rec,
        progress=events.append, model_kwargs={"channels": 8},
    )  # fmt: skip
    assert [c[0] for c in rec.calls] == [(3, 4, 16, 16)] * 4
    # the reported loss is the objective's value, step by step
    steps = [e["loss"] for e in events if e["event"] == "step"]
    np.testing.assert_array_equal(steps, [c[1] for c in rec.calls])
    assert res.card.training["objective"] == "recording"
    assert res.card.training["loss"] == "L1 (recorded)"


def test_default_objective_recorded_and_other_data_refused(tmp_path):
    res = train(
        "dicnn", _pairs(), "landsat8", 2, tmp_path / "w.safetensors", steps=2, patch=16,
        batch_size=2, bit_depth=12, model_kwargs={"channels": 8},
    )  # fmt: skip
    assert res.card.training["objective"] == "wald-l1" and res.card.training["loss"] == "L1"
    full = Recording(name="full-res", data="full")
    with pytest.raises(OptionError, match="--objective full-res needs 'full' patches"):
        train("dicnn", _pairs(), "landsat8", 2, tmp_path / "x.safetensors", steps=1,
              objective=full)  # fmt: skip
    with pytest.raises(UnknownNameError, match="--objective"):
        train("dicnn", _pairs(), "landsat8", 2, tmp_path / "x.safetensors", steps=1,
              objective="nope")  # fmt: skip


def test_trainable_models_come_from_the_registry():
    names = trainable_models()
    assert names and names == [n for n in model_names() if get_entry(n).info.trainable]
    assert "brovey" not in names


def test_cli_objective_option(tmp_path, capsys, make_scene):
    s = make_scene(pan_shape=(64, 64), ratio=2, bands=3)
    out = tmp_path / "w.safetensors"
    base = ["train", "-m", "dicnn", f"{s.pan}:{s.ms[0]}", "--sensor", "landsat8", "-o", str(out)]
    code, _, err = run_cli([*base, "--steps", "1", "--objective", "wald-l9"], capsys)
    one_line_error(code, err, "--objective", "wald-l9", *objective_names())
    assert code == 2 and not out.exists()
    code, _, err = run_cli([*base, "--steps", "2", "--patch", "8", "--objective", "wald-l1",
                            "--quiet"], capsys)  # fmt: skip
    assert code == 0, err
    code, text, err = run_cli(["train", "--help"], capsys)
    assert code == 0 and "--objective" in text + err
