"""One registry for every model, classical or deep (timm's ``register_model`` pattern).

A module registers a model with :func:`register_model`, giving a :class:`ModelInfo`
record and a factory. The CLI's ``-m`` choices, ``pansharp models`` and the
registry-driven tests all read :data:`REGISTRY`, so nothing drifts. Factories are called
lazily: listing models never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from errors import unknown_name


@dataclass(frozen=True)
class ModelInfo:
    """Metadata record of one model.

    ``halo`` is the receptive-field half-width in PAN pixels as a function of the ratio:
    the tiling engine reads that many extra pixels around each tile so that a tile's
    core equals the whole-image result (the support of every filter the method chains).
    """

    name: str
    title: str
    family: str  # "cs", "mra", "interp", "deep"
    reference: str
    halo: Callable[[int], int]
    min_bands: int = 1
    max_bands: int | None = None
    ratios: tuple[int, ...] | None = None  # None: any integer ratio
    needs_fit: bool = False  # global coefficients estimated in a first streaming pass
    needs_weights: bool = False
    normalisation: str = "none (raw DN)"
    sensor: str | None = None
    licence: str = "MIT (pansharp implementation)"
    params: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def receptive_field(self, ratio: int) -> int:
        """Full receptive field width in PAN pixels (2 * halo + 1)."""
        return 2 * self.halo(ratio) + 1

    def to_dict(self, ratio: int = 4) -> dict[str, Any]:
        d = asdict(self)
        d.pop("halo")
        d["halo_at_ratio"] = {r: self.halo(r) for r in (2, 4)}
        d["receptive_field_at_ratio_4"] = self.receptive_field(ratio)
        return d


@dataclass(frozen=True)
class Entry:
    info: ModelInfo
    factory: Callable[..., Any]


REGISTRY: dict[str, Entry] = {}


def register_model(info: ModelInfo) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``factory`` under ``info.name``; a duplicate name is a bug."""

    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        if info.name in REGISTRY:
            raise RuntimeError(f"model {info.name!r} registered twice")
        REGISTRY[info.name] = Entry(info, factory)
        return factory

    return deco


def _load_all() -> None:
    """Import the modules that register models (cheap: no torch at import)."""
    import models.classical  # noqa: F401
    import models.deep  # noqa: F401


def model_names(family: str | None = None) -> list[str]:
    """Registered names in registration order, optionally of one family."""
    _load_all()
    return [n for n, e in REGISTRY.items() if family is None or e.info.family == family]


def get_entry(name: str) -> Entry:
    """Look a model up by ``-m`` name; unknown names list every valid one."""
    _load_all()
    key = name.strip().lower()
    if key not in REGISTRY:
        raise unknown_name("method", name, list(REGISTRY), "-m/--method")
    return REGISTRY[key]


def create_model(name: str, **kwargs: Any) -> Any:
    """Instantiate a registered model."""
    return get_entry(name).factory(**kwargs)


def available_weights(name: str) -> list[dict[str, Any]]:
    """Weights known for a model (sensor, bands, ratio, path); classical models need none."""
    entry = get_entry(name)
    if not entry.info.needs_weights:
        return []
    finder = entry.info.extra.get("weights_finder")
    return list(finder()) if callable(finder) else []
