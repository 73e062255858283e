"""The Landsat-derived ratio-4 weights are a starting point, not weights for a VHR sensor:
without weights of its own, a 4-band ratio-4 scene is refused with a message naming
--adapt, before any output exists."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import models.deep.card as card_mod
from errors import WeightsError
from models.deep.method import STARTING_POINT, refuse_starting_point
from tests.cli import one_line_error, run_cli
from tests.conftest import SHARED, needs_shared


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(card_mod, "WEIGHTS_DIR", tmp_path)
    (tmp_path / f"fusionnet_{STARTING_POINT}.safetensors").write_bytes(b"x")
    return tmp_path


def _scene(bands: int = 4, ratio: int = 4):
    return SimpleNamespace(n_bands=bands, ratio=ratio)


@pytest.mark.parametrize("sensor", ["worldview2", "geoeye1", "ikonos", "generic"])
def test_vhr_scene_is_refused_naming_adapt(weights_dir, sensor):
    with pytest.raises(WeightsError) as exc:
        refuse_starting_point(_scene(), "fusionnet", sensor)
    msg = str(exc.value)
    assert "--adapt" in msg and "--weights" in msg and f"fusionnet_{STARTING_POINT}" in msg
    assert "\n" not in msg


def test_not_refused_where_it_does_not_apply(weights_dir):
    refuse_starting_point(_scene(), "fusionnet", STARTING_POINT)  # its own sensor
    refuse_starting_point(_scene(8), "fusionnet", "worldview2")  # 8 bands: another lookup
    refuse_starting_point(_scene(4, 2), "fusionnet", "generic")  # ratio 2
    refuse_starting_point(_scene(), "dicnn", "worldview2")  # no starting point for dicnn
    (weights_dir / "fusionnet_worldview2.safetensors").write_bytes(b"x")
    refuse_starting_point(_scene(), "fusionnet", "worldview2")  # weights of its own


@needs_shared("spacenet6_wv2_tiles")
@pytest.mark.parametrize("model", ["fusionnet", "otpnet", "premix-h"])
def test_worldview2_tile_is_refused_naming_adapt(tmp_path, capsys, model):
    """A real WorldView-2 tile (4 bands, ratio 4) with the shipped weights: one line
    naming --adapt, exit code 6, nothing at the destination."""
    tiles = SHARED / "spacenet6_wv2_tiles"
    out = tmp_path / "wv2.tif"
    args = ["fuse", str(tiles / "pan1.tif"), str(tiles / "ms1.tif"), "-m", model]
    code, _, err = run_cli([*args, "--sensor", "worldview2", "-o", str(out)], capsys)
    line = one_line_error(code, err, "--adapt", f"{model}_{STARTING_POINT}", "worldview2")
    assert code == 6, line
    assert list(tmp_path.iterdir()) == []
