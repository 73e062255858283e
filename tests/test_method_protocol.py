"""The method protocol (models.protocol) and the one executor (tiling.executor).

Registry-driven: every method has its check and prepare phases and declares its run
options; no caller outside the registry and the method modules branches on a method's
kind; ``evaluate -m`` scores exactly what ``fuse`` writes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from errors import OptionError
from models.protocol import BLENDED, EXACT, RUN_OPTIONS, MethodSpec, PatchBatch
from models.registry import REGISTRY, get_entry, model_names, refuse_run_options
from raster.scene import open_scene
from tiling.executor import context_for, execute, prepare
from tiling.fuse import FuseOptions, build_context, fuse_files, resolve_sensor

ROOT = Path(__file__).resolve().parents[1]
# where a method's kind may be looked at: the registry and the modules implementing kinds
METHOD_MODULES = ("models/registry.py", "models/classical/", "models/deep/", "models/iterative/")
KIND_BRANCH = re.compile(
    r"needs_weights|\binfo\.family\b|\bfamily\s*(?:==|!=|\bin\b)|model_names\(\s*['\"]deep"
)


def test_no_kind_branch_outside_the_registry_and_method_modules():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith((".venv/", "tests/", "build/")) or rel.startswith(METHOD_MODULES):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if KIND_BRANCH.search(line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "branches on a method's kind:\n" + "\n".join(found)


def test_the_grep_finds_a_kind_branch():
    """The pattern above is not vacuous: the branches this design removed match it."""
    for line in (
        'if entry.info.family == "deep":',
        "if not info.needs_weights:",
        "choose a deep method ({', '.join(model_names('deep'))})",
    ):
        assert KIND_BRANCH.search(line), line


@pytest.mark.parametrize("name", model_names())
def test_every_method_declares_its_protocol(name):
    entry = get_entry(name)
    assert callable(entry.check) and callable(entry.prepare)
    assert set(entry.info.run_options) <= set(RUN_OPTIONS)


@pytest.mark.parametrize("name", model_names())
def test_prepared_method_spec_and_one_tile(name, make_scene):
    """prepare -> spec -> execute on a small scene: the spec's halo is the registry's
    for methods without a network, and every pixel comes back finite."""
    info = get_entry(name).info
    if "weights" in info.run_options:
        pytest.skip("methods with weights are prepared in test_deep_inference")
    paths = make_scene(pan_shape=(203, 189), ratio=4, bands=4, seed=1)
    scene = open_scene(paths.pan, paths.ms)
    sensor = resolve_sensor(scene, None)
    ctx = build_context(scene, sensor, FuseOptions(), 16)
    context = context_for(scene, ctx, sensor.name, tile=64, threads=1)
    prepared = prepare(name, scene, context)
    assert isinstance(prepared.spec, MethodSpec)
    assert prepared.spec.tiling == EXACT
    assert prepared.spec.halo == info.halo(scene.ratio)
    out = np.full((scene.n_bands, *scene.out_shape), np.nan)

    def sink(spec, fused, valid):
        out[:, spec.row : spec.row + spec.height, spec.col : spec.col + spec.width] = fused

    execute(scene, prepared, ctx, sink, tile=64, threads=1, dtype=np.float64)
    assert np.isfinite(out).all()


def test_run_options_a_method_does_not_use_are_refused():
    with pytest.raises(OptionError, match=r"--weights is not an option of -m brovey"):
        refuse_run_options("brovey", ["weights"], {"weights": "--weights"})
    with pytest.raises(OptionError, match=r"--seed is not an option of -m fusionnet"):
        refuse_run_options("fusionnet", ["seed"], {"seed": "--seed"})
    refuse_run_options("fusionnet", ["weights", "device"], {})  # used: no error


def test_patch_batch_subset_keeps_positions():
    n = 3
    b = PatchBatch(
        ids=[(0, k) for k in range(n)],
        origins=[(-4, 10 * k) for k in range(n)],
        ms=np.arange(n * 2 * 4, dtype=np.float32).reshape(n, 2, 2, 2),
        pan=np.zeros((n, 1, 2, 2), np.float32),
        valid=[np.ones((2, 2), bool)] * n,
    )
    part = b.subset(slice(1, 3))
    assert len(part) == 2 and part.origins == [(-4, 10), (-4, 20)]
    assert np.array_equal(part.ms, b.ms[1:3])


def test_spec_refuses_an_unknown_tiling():
    with pytest.raises(ValueError):
        MethodSpec(halo=1, tiling="seamless")
    assert MethodSpec(halo=1, tiling=BLENDED).tiling == BLENDED


def test_classical_registrations_all_carry_the_classical_phases():
    from models.classical.method import prepare_classical

    classical = [n for n, e in REGISTRY.items() if e.prepare is prepare_classical]
    assert len(classical) == 15


def test_evaluate_m_scores_what_fuse_writes(make_scene, tmp_path):
    """``evaluate -m fusionnet`` (its own run through the executor) and ``evaluate
    --fused`` of ``fuse -m fusionnet --dtype float32``: same indexes, on a 2400 x 2400
    scene that needs several patches."""
    import torch

    from models.deep.card import WeightsCard
    from models.deep.weights import save_weights
    from models.registry import create_model
    from quality.evaluate import evaluate_fused, evaluate_methods

    paths = make_scene(pan_shape=(2400, 2400), ratio=4, bands=4, seed=5)
    torch.manual_seed(0)
    net = create_model("fusionnet", n_bands=4, channels=8, n_blocks=1)
    card = WeightsCard(
        model="fusionnet",
        kwargs=dict(net.config),
        sensor="generic",
        band_names=[f"b{i + 1}" for i in range(4)],
        ratio=4,
        bit_depth=16,
        scale=65535.0,
    )
    w = str(save_weights(tmp_path / "fusionnet.safetensors", net, card))
    out = tmp_path / "fused.tif"
    fuse_files(
        paths.pan,
        paths.ms,
        str(out),
        FuseOptions(method="fusionnet", weights=w, dtype="float32"),
    )
    scored = evaluate_methods(
        paths.pan, paths.ms, ["fusionnet"], protocol="full", weights={"fusionnet": w}
    )
    given = evaluate_fused(str(out), paths.pan, paths.ms)
    a = [r for r in scored["results"] if r["scale"] == "full"][0]
    b = [r for r in given["results"] if r["scale"] == "full"][0]
    keys = [k for k in a if k not in ("method", "scale")]
    assert keys and all(k in b for k in keys)
    for k in keys:
        assert abs(a[k] - b[k]) <= 1e-6, (k, a[k], b[k])


def test_listing_order_does_not_depend_on_which_module_imported_first():
    """``pansharp train`` imports the deep package before the registry loads the rest:
    the list (CLI choices, ``pansharp models``) is still numpy methods, then torch ones."""
    from tests.probe import run_python

    code = "import models.deep\nfrom models.registry import model_names\nprint(*model_names())"
    first_deep = run_python(code).split()
    assert first_deep == model_names()
    assert first_deep.index("brovey") < first_deep.index("pnn")


@pytest.mark.parametrize("name", model_names())
def test_weights_are_refused_by_every_method_that_takes_none(name):
    """GIHS was registered ``needs_weights`` (its spectral weights), which let
    ``--weights`` pass silently; run options are declared per method now."""
    takes = "weights" in get_entry(name).info.run_options
    if takes:
        refuse_run_options(name, ["weights"], {"weights": "--weights"})
    else:
        with pytest.raises(OptionError, match="takes no weights"):
            refuse_run_options(name, ["weights"], {"weights": "--weights"})
    assert takes == get_entry(name).info.torch  # the networks take weights, numpy methods none
