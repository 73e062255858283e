"""One registry for every model, classical or deep (timm's ``register_model`` pattern).

A module registers a model with :func:`register_model`, giving a :class:`ModelInfo`
record and a factory. The CLI's ``-m`` choices, ``pansharp models`` and the
registry-driven tests all read :data:`REGISTRY`, so nothing drifts. Factories are called
lazily: listing models never imports torch.

Each entry also carries the ``check`` and ``prepare`` phases of the method protocol
(:mod:`models.protocol`) for its kind, given by the module that registers it
(:func:`models.classical.method.register_classical`, :mod:`models.deep`,
:mod:`models.iterative`): callers use :func:`check_method` and :func:`prepare_method`
and never ask which kind a method is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from errors import OptionError, unknown_name


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
    trainable: bool = False  # ``pansharp train`` can fit it (a network with weights)
    normalisation: str = "none (raw DN)"
    sensor: str | None = None
    licence: str = "MIT (pansharp implementation)"
    params: int | None = None
    # RunSettings fields (models.protocol.RUN_OPTIONS) this method uses; any other one
    # given on the command line is refused rather than silently ignored
    run_options: tuple[str, ...] = ()
    torch: bool = False  # runs on torch (the CLI imports it before the run's clock starts)
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
    """A registered method: its record, its factory and its protocol phases."""

    info: ModelInfo
    factory: Callable[..., Any]
    check: Callable[..., None]  # (entry, scene, PrepareContext) -> None
    prepare: Callable[..., Any]  # (entry, scene, PrepareContext) -> models.protocol.Prepared


REGISTRY: dict[str, Entry] = {}


def register_model(
    info: ModelInfo, *, check: Callable[..., None], prepare: Callable[..., Any]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``factory`` under ``info.name`` with the ``check`` and
    ``prepare`` phases of its kind; a duplicate name is a bug."""

    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        if info.name in REGISTRY:
            raise RuntimeError(f"model {info.name!r} registered twice")
        REGISTRY[info.name] = Entry(info, factory, check, prepare)
        return factory

    return deco


def unregister_model(name: str) -> None:
    """Remove a registration (tests and plugins that register a model temporarily)."""
    REGISTRY.pop(name, None)


def _load_all() -> None:
    """Import the modules that register models (cheap: no torch at import)."""
    import models.classical  # noqa: F401
    import models.deep  # noqa: F401


def model_names(family: str | None = None) -> list[str]:
    """Registered names, optionally of one family: the numpy methods first, then the
    torch ones, each in registration order (stable whichever module imported first)."""
    _load_all()
    names = [n for n, e in REGISTRY.items() if family is None or e.info.family == family]
    return sorted(names, key=lambda n: REGISTRY[n].info.torch)


def get_entry(name: str) -> Entry:
    """Look a model up by ``-m`` name; unknown names list every valid one."""
    _load_all()
    key = name.strip().lower()
    if key not in REGISTRY:
        raise unknown_name("method", name, model_names(), "-m/--method")
    return REGISTRY[key]


def check_bands_and_ratio(info: ModelInfo, n_bands: int, ratio: int) -> None:
    """The registry record's limits: band count and supported ratios."""
    if n_bands < info.min_bands or (info.max_bands is not None and n_bands > info.max_bands):
        hi = info.max_bands if info.max_bands is not None else "any"
        raise OptionError(
            f"method {info.name!r} takes {info.min_bands} to {hi} MS bands, the MS has "
            f"{n_bands}; choose another -m (see pansharp models)"
        )
    if info.ratios is not None and ratio not in info.ratios:
        raise OptionError(
            f"method {info.name!r} supports ratios {list(info.ratios)}, the scene has "
            f"{ratio}; choose another -m"
        )


def check_method(name: str, scene: Any, context: Any) -> None:
    """Phase 1 of the protocol: refuse what cannot run, from headers only."""
    entry = get_entry(name)
    check_bands_and_ratio(entry.info, scene.n_bands, scene.ratio)
    entry.check(entry, scene, context)


def prepare_method(name: str, scene: Any, context: Any) -> Any:
    """Phases 1 and 2: check, then prepare (fit, load weights...) for ``scene``."""
    check_method(name, scene, context)
    entry = get_entry(name)
    return entry.prepare(entry, scene, context)


def methods_taking(*options: str) -> list[str]:
    """The registered methods whose run settings include every one of ``options``."""
    return [n for n in model_names() if all(o in REGISTRY[n].info.run_options for o in options)]


def refuse_run_options(name: str, given: list[str], flags: dict[str, str]) -> None:
    """Refuse run settings (``given``: RunSettings field names typed by the user) that
    method ``name`` does not use, naming each flag (``flags``: field -> CLI flag)."""
    info = get_entry(name).info
    unused = [g for g in given if g not in info.run_options]
    if not unused:
        return
    typed = [flags.get(g, g) for g in unused]
    one = len(typed) == 1
    what = (
        f"{typed[0]} is not an option"
        if one
        else (f"{', '.join(typed[:-1])} and {typed[-1]} are not options")
    )
    which = "" if "weights" in info.run_options else ", which takes no weights"
    users = methods_taking(*unused)
    hint = f", or choose a method that takes {'it' if one else 'them'} ({', '.join(users)})"
    raise OptionError(
        f"{what} of -m {info.name}{which}: drop {typed[0] if one else 'them'}"
        f"{hint if users else ''}"
    )


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
