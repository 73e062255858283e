"""Saving and loading network weights as safetensors with a pansharp card.

Why safetensors only: ``torch.load`` on a user-supplied ``.pt``/``.pth`` unpickles it,
which can run arbitrary code; safetensors holds raw tensors and a JSON header, nothing
executable. Every file is validated (:func:`models.deep.card.read_header`) before the
safetensors library touches it, so a pickle or zip gets a clear :class:`WeightsError`.

Why a card: weights are only valid for the model, band count, ratio, sensor and
normalisation they were trained with. :func:`check_card` checks all of them against
the scene and names each mismatch with the fix, instead of producing a silently wrong
image. Why every tensor is checked (:func:`check_tensors`): a tensor of the wrong shape
or holding NaN/Inf (a diverged run, a damaged file) would fail deep inside torch or
turn the whole output into NaN, which the writer then stores as zeros.

Torch is imported only by the functions that build or read tensors: finding the
weights and checking their card against the scene (:func:`resolve_weights`,
:func:`check_card`) read the JSON header alone, so a refusal costs no torch import
(~3 s and ~280 MB on this project's machine).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "WeightsCard",
    "check_card",
    "check_tensors",
    "default_weights_path",
    "find_default_weights",
    "list_default_weights",
    "load_state",
    "load_weights",
    "read_card",
    "resolve_weights",
    "save_tensors",
    "save_weights",
    "with_sampler_settings",
]


def save_tensors(path: Path | str, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Write a safetensors file atomically (temp file + rename: no half-written weights)."""
    from safetensors.torch import save_file

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


def with_sampler_settings(
    path: Path | str, dest: Path | str, settings: dict[str, int | None]
) -> WeightsCard:
    """Write ``path``'s weights to ``dest`` with the sampler settings of its card's kwargs
    replaced (:data:`models.deep.staged.SAMPLER_SETTINGS`: what training never reads,
    so the tensors stay valid); the new card.

    The new kwargs must build the network and the tensors must load into it strictly,
    or nothing is written (WeightsError / ValueError). ``dest`` may be ``path``: the file
    is replaced atomically (:func:`save_tensors`).
    """
    from models.deep.staged import SAMPLER_SETTINGS
    from models.registry import create_model

    unknown = sorted(set(settings) - set(SAMPLER_SETTINGS))
    if unknown:
        raise ValueError(
            f"not sampler settings: {', '.join(unknown)} (valid: {', '.join(SAMPLER_SETTINGS)})"
        )
    tensors, meta = load_state(path)
    card = WeightsCard.from_metadata(meta, path)
    kwargs = {**card.kwargs, **settings}
    try:
        model = create_model(card.model, **kwargs)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: {settings} do not build {card.model}: {exc}") from exc
    model.load_state_dict(tensors, strict=True)
    new = dataclasses.replace(card, kwargs=dict(model.config))
    save_tensors(dest, tensors, {**meta, **new.to_metadata()})
    return new


def load_state(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors (on CPU) and the raw metadata of a validated safetensors file."""
    from safetensors import safe_open

    read_header(path)  # refuses pickles/zips/garbage before safetensors parses anything
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except Exception as exc:  # the library raises its own SafetensorError and others
        raise WeightsError(f"{path} is not a readable safetensors file ({exc})") from exc
    return tensors, meta


#: Weights files whose tensors this process keeps (least recently used dropped first).
CACHED_FILES = 4
_CACHE: OrderedDict[tuple[str, int, int], dict[str, torch.Tensor]] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def cached_tensors(path: Path | str) -> dict[str, torch.Tensor]:
    """:func:`load_state`'s tensors, read once per process and file version.

    A process that fuses many scenes with one model (a batch worker) reads and checks
    the file once; each scene still builds its own network from the tensors (a copy:
    ``load_state_dict`` copies), so nothing one scene sets (PreMix-H's scene tables)
    reaches another. The key is the resolved path with the file's size and mtime: a
    file rewritten in place is read again.
    """
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    tensors, _ = load_state(path)
    with _CACHE_LOCK:
        _CACHE[key] = tensors
        while len(_CACHE) > CACHED_FILES:
            _CACHE.popitem(last=False)
    return tensors


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
    built = card.kwargs.get("ratio")
    if built is not None and int(built) != int(card.ratio):
        problems.append(
            f"its network was built for ratio {built} but the card says {card.ratio}: the "
            f"file is inconsistent, retrain it with `pansharp train -m {model_name}`"
        )
    if sensor is not None and _sensor_key(card.sensor) != _sensor_key(sensor):
        problems.append(
            f"it was trained on {card.sensor!r} scenes but the sensor is {sensor!r}: pass "
            f"--sensor {card.sensor} if the scene really is {card.sensor}, or --weights with "
            f"{sensor} weights (`pansharp train -m {model_name} --sensor {sensor}`)"
        )
    if problems:
        raise WeightsError(f"weights {path} do not fit: " + "; ".join(problems))


MAX_LISTED = 3  # tensor problems named in one message; the rest are counted


def check_tensors(
    tensors: dict[str, torch.Tensor], model: nn.Module, path: Path | str, model_name: str
) -> None:
    """Raise one WeightsError naming the tensors of ``path`` that ``model`` cannot take.

    Every tensor is checked, before any is copied into the network: its name must be one
    of the network's (missing and extra names are listed), its shape the network's
    (both shapes are given), and every value finite (NaN and +-Inf are counted). The
    card said how to build the network (``model``); a file whose tensors disagree with
    it was damaged or edited, or came from a diverged training run.
    """
    import torch

    expected = model.state_dict()
    problems: list[str] = []
    for name, ref in expected.items():
        if name not in tensors:
            problems.append(f"tensor {name!r} of shape {list(ref.shape)} is missing")
    for name, t in tensors.items():
        ref = expected.get(name)
        if ref is None:
            problems.append(f"tensor {name!r} is not part of the {model_name} network")
        elif tuple(t.shape) != tuple(ref.shape):
            problems.append(
                f"tensor {name!r} has shape {list(t.shape)}, expected {list(ref.shape)}"
            )
    if problems:
        listed = _listed(problems)
        raise WeightsError(
            f"{path}: tensors do not match the {model_name} architecture in its card "
            f"({listed}); the file is damaged or was edited - re-run `pansharp train`"
        )
    for name, t in tensors.items():
        if not (t.is_floating_point() or t.is_complex()):
            continue  # integer tensors are always finite
        finite = torch.isfinite(t)
        if bool(finite.all()):
            continue
        n_nan = int(torch.isnan(t).sum())
        n_inf = int((~finite).sum()) - n_nan
        counts = [f"{n} {kind}" for n, kind in ((n_nan, "NaN"), (n_inf, "infinite")) if n]
        problems.append(f"tensor {name!r} holds {' and '.join(counts)} of {t.numel()} values")
    if problems:
        listed = _listed(problems)
        raise WeightsError(
            f"{path}: {listed}: the {model_name} network would output NaN or Inf; the "
            f"training diverged or the file is damaged - use other --weights or re-run "
            f"`pansharp train`"
        )


def _listed(problems: list[str]) -> str:
    """The first ``MAX_LISTED`` problems, then how many more: one line stays readable."""
    more = len(problems) - MAX_LISTED
    return "; ".join(problems[:MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")


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
    skips the sensor check) before torch is imported, then every tensor
    (:func:`check_tensors`), and returns ``(model in eval mode on device, card)``; the
    card's ``bit_depth``/``scale`` is the normalisation to use in :func:`predict`.
    """
    from models.registry import create_model  # registry import is cheap; keeps cycles out

    card = read_card(path)
    check_card(card, path, model_name, n_bands, ratio, sensor)
    tensors = cached_tensors(path)
    try:
        model = create_model(card.model, **card.kwargs)
    except (TypeError, ValueError) as exc:
        raise WeightsError(
            f"{path}: card kwargs {card.kwargs} do not build {card.model}: {exc}"
        ) from exc
    if card.training.get("tailors"):  # adapted with --adapt tailor (--save-adapted)
        from models.deep.tailor import attach_tailors

        attach_tailors(model)
    check_tensors(tensors, model, path, card.model)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:  # names and shapes were checked: a dtype torch cannot copy
        detail = " ".join(str(exc).split())
        raise WeightsError(
            f"{path}: tensors do not load into the {card.model} architecture in its card "
            f"({detail}); the file is damaged or was edited - re-run `pansharp train`"
        ) from exc
    return model.to(device).eval(), card


def resolve_weights(
    weights: Path | str | None, model_name: str, sensor: str, adaptable: bool = True
) -> Path:
    """``--weights FILE`` if given, else the shipped default for (model, sensor)
    (``adaptable``: the refusal may offer ``--adapt``)."""
    if weights is not None:
        return Path(weights)
    return find_default_weights(model_name, _sensor_key(sensor), adaptable)


def card_for(model: nn.Module, model_name: str, **fields: Any) -> WeightsCard:
    """A card whose kwargs are ``model.config`` (what rebuilds the network)."""
    return WeightsCard(model=model_name, kwargs=dict(model.config), **fields)
