"""Saving and loading network weights as safetensors with a pansharp card.

Why safetensors only: ``torch.load`` on a user-supplied ``.pt``/``.pth`` unpickles it,
which can run arbitrary code; safetensors holds raw tensors and a JSON header, nothing
executable. Every file is validated (:func:`models.deep.card.read_header`) before the
safetensors library touches it, so a pickle or zip gets a clear :class:`WeightsError`.

Why a card: weights are only valid for the model, band count, ratio, sensor and
normalisation they were trained with. :func:`load_weights` checks all of them against
the scene and names each mismatch with the fix, instead of producing a silently wrong
image.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from errors import WeightsError
from models.deep.card import (
    WeightsCard,
    default_weights_path,
    find_default_weights,
    list_default_weights,
    read_card,
    read_header,
)
from physics.sensors import get_sensor

__all__ = [
    "WeightsCard",
    "default_weights_path",
    "find_default_weights",
    "list_default_weights",
    "load_state",
    "load_weights",
    "read_card",
    "resolve_weights",
    "save_tensors",
    "save_weights",
]


def save_tensors(path: Path | str, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Write a safetensors file atomically (temp file + rename: no half-written weights)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(clean, tmp, metadata=meta)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_weights(path: Path | str, model: nn.Module, card: WeightsCard) -> Path:
    """Save ``model``'s state dict with ``card`` in the header metadata; returns the path."""
    cfg = getattr(model, "config", None)
    if cfg is not None and dict(cfg) != dict(card.kwargs):
        raise ValueError(f"card kwargs {card.kwargs} differ from the model's config {cfg}")
    save_tensors(path, dict(model.state_dict()), card.to_metadata())
    return Path(path)


def load_state(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors (on CPU) and the raw metadata of a validated safetensors file."""
    read_header(path)  # refuses pickles/zips/garbage before safetensors parses anything
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except Exception as exc:  # the library raises its own SafetensorError and others
        raise WeightsError(f"{path} is not a readable safetensors file ({exc})") from exc
    return tensors, meta


def _sensor_key(name: str) -> str:
    return get_sensor(name).name


def check_card(
    card: WeightsCard,
    path: Path | str,
    model_name: str,
    n_bands: int,
    ratio: int,
    sensor: str | None,
) -> None:
    """Raise one WeightsError listing every way ``card`` does not fit the scene, with fixes."""
    problems: list[str] = []
    if card.model != model_name:
        problems.append(
            f"it holds {card.model!r} weights, not {model_name!r}: run with -m {card.model}, "
            f"or pass --weights with {model_name} weights"
        )
    if card.n_bands != n_bands:
        names = f" ({', '.join(card.band_names)})" if card.band_names else ""
        problems.append(
            f"it was trained on {card.n_bands} bands{names} but the MS image has {n_bands}: "
            f"give an MS with those {card.n_bands} bands, or weights for {n_bands} bands "
            f"(--weights FILE, or `pansharp train` on {n_bands}-band scenes)"
        )
    if card.ratio != ratio:
        problems.append(
            f"it was trained at ratio {card.ratio} but this PAN/MS pair has ratio {ratio}: "
            f"pass --weights with weights trained at ratio {ratio}, or `pansharp train` them"
        )
    if sensor is not None and _sensor_key(card.sensor) != _sensor_key(sensor):
        problems.append(
            f"it was trained on {card.sensor!r} scenes but the sensor is {sensor!r}: pass "
            f"--sensor {card.sensor} if the scene really is {card.sensor}, or --weights with "
            f"{sensor} weights (`pansharp train -m {model_name} --sensor {sensor}`)"
        )
    if problems:
        raise WeightsError(f"weights {path} do not fit: " + "; ".join(problems))


def load_weights(
    path: Path | str,
    model_name: str,
    n_bands: int,
    ratio: int,
    sensor: str | None,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, WeightsCard]:
    """Build the network described by the card at ``path`` and load its weights.

    Checks the card against the scene (model, bands, ratio, sensor; ``sensor=None``
    skips the sensor check) and returns ``(model in eval mode on device, card)``; the
    card's ``bit_depth``/``scale`` is the normalisation to use in :func:`predict`.
    """
    from models.registry import create_model  # registry import is cheap; keeps cycles out

    card = read_card(path)
    check_card(card, path, model_name, n_bands, ratio, sensor)
    tensors, _ = load_state(path)
    try:
        model = create_model(card.model, **card.kwargs)
    except (TypeError, ValueError) as exc:
        raise WeightsError(
            f"{path}: card kwargs {card.kwargs} do not build {card.model}: {exc}"
        ) from exc
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(
            f"{path}: tensors do not match the {card.model} architecture in its card "
            f"({first}); the file is damaged or was edited - re-run `pansharp train`"
        ) from exc
    return model.to(device).eval(), card


def resolve_weights(weights: Path | str | None, model_name: str, sensor: str) -> Path:
    """``--weights FILE`` if given, else the shipped default for (model, sensor)."""
    if weights is not None:
        return Path(weights)
    return find_default_weights(model_name, _sensor_key(sensor))


def card_for(model: nn.Module, model_name: str, **fields: Any) -> WeightsCard:
    """A card whose kwargs are ``model.config`` (what rebuilds the network)."""
    return WeightsCard(model=model_name, kwargs=dict(model.config), **fields)
