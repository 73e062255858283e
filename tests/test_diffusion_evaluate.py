"""``pansharp evaluate --steps``: the diffusion models scored at a chosen step count
(the quality-vs-steps table of models/deep/weights/README.md is made this way); each
row records the steps and seed that made it; --steps with no sampling method is refused."""

from __future__ import annotations

import json

import pytest

from models.registry import model_names
from tests.cli import one_line_error, run_cli
from tests.diffusion_weights import write_weights

DIFFUSION = model_names("diffusion")


@pytest.fixture
def scene(make_scene):
    return make_scene(pan_shape=(332, 308), ratio=4, bands=4, seed=5)


def _evaluate(scene, name, weights, capsys, *extra: str) -> list[dict]:
    argv = ["evaluate", scene.pan, *scene.ms, "-m", name, "-m", "exp", "--protocol",
            "reduced", "--weights", f"{name}={weights}", "--bit-depth", "16", "--json", "-",
            "-q", *extra]  # fmt: skip
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    return json.loads(out)["results"]


@pytest.mark.parametrize("name", DIFFUSION)
def test_steps_reach_the_sampler_and_the_report(name, scene, tmp_path, capsys):
    w = write_weights(name, tmp_path / "w.safetensors")
    one = {r["method"]: r for r in _evaluate(scene, name, w, capsys, "--steps", "1")}
    three = {r["method"]: r for r in _evaluate(scene, name, w, capsys, "--steps", "3")}
    assert (one[name]["steps"], three[name]["steps"]) == (1, 3)
    assert one[name]["seed"] == 0
    assert "steps" not in one["exp"]  # a method that does not sample records none
    assert one["exp"]["ergas"] == three["exp"]["ergas"]
    assert one[name]["ergas"] != three[name]["ergas"]  # another sampler, another image


def test_steps_without_a_sampling_method_is_refused(scene, capsys):
    argv = ["evaluate", scene.pan, *scene.ms, "-m", "exp", "--steps", "5", "--bit-depth", "16"]
    code, _, err = run_cli([*argv, "-q"], capsys)
    line = one_line_error(code, err, "--steps", *DIFFUSION)
    assert "-m" in line
