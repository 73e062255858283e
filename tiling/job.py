"""One fuse run as a value that travels: pickled to a worker process or sent as JSON.

A :class:`FuseJob` holds what :func:`tiling.fuse.fuse_files` takes (PAN, MS files,
destination, :class:`tiling.fuse.FuseOptions`) and nothing else, so a batch runner can
hand jobs to a ``spawn`` process pool (the job and any :class:`errors.PansharpError` it
raises pickle) or write them as JSON lines (:meth:`FuseJob.to_dict` /
:meth:`FuseJob.from_dict`). :func:`run_job` is ``fuse_files`` on a copy of the options;
it changes nothing process-wide beyond what ``fuse_files`` does. A worker process that
will run deep models calls :func:`tiling.process.apply_process_settings` first, before it
imports torch, as the ``pansharp`` command does.

JSON form: ``{"pan": str, "ms": [str, ...], "out": str, "options": {field: value}}``
with every ``FuseOptions`` field; a float option that is not finite (``nodata`` NaN)
is the string ``"nan"``, ``"inf"`` or ``"-inf"``, since JSON has no such numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from errors import OptionError
from tiling.engine import Progress
from tiling.fuse import FuseOptions, FuseResult, fuse_files

JOB_KEYS = ("pan", "ms", "out", "options")
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


@dataclass(frozen=True)
class FuseJob:
    """PAN and MS files fused into ``out`` with ``options``.

    Paths are kept as given (``os.fspath``: relative ones resolve in the process that
    runs the job). ``options`` is the job's own copy, taken at construction, so later
    changes to the caller's ``FuseOptions`` do not reach it; the job is not hashable,
    since ``FuseOptions`` is not.
    """

    pan: str
    ms: tuple[str, ...]
    out: str
    options: FuseOptions = field(default_factory=FuseOptions)

    def __post_init__(self) -> None:
        if isinstance(self.ms, (str, bytes, os.PathLike)):
            raise OptionError(f"FuseJob ms must be a list of MS files, not one path {self.ms!r}")
        if not isinstance(self.options, FuseOptions):
            raise OptionError(
                f"FuseJob options must be a tiling.fuse.FuseOptions, not "
                f"{type(self.options).__name__}"
            )
        object.__setattr__(self, "pan", os.fspath(self.pan))
        object.__setattr__(self, "ms", tuple(os.fspath(p) for p in self.ms))
        object.__setattr__(self, "out", os.fspath(self.out))
        object.__setattr__(self, "options", copy.deepcopy(self.options))
        if not self.ms:
            raise OptionError("FuseJob ms is empty; give at least one MS file")

    def to_dict(self) -> dict[str, Any]:
        """The job as JSON-safe builtins (``json.dumps(..., allow_nan=False)`` accepts it).

        Raises :class:`errors.OptionError` naming the option whose value has no JSON form
        (e.g. a tuple or an array in ``method_options``).
        """
        hints = _option_hints()
        options = {
            f.name: _to_json(getattr(self.options, f.name), hints.get(f.name, Any), f.name)
            for f in dataclasses.fields(FuseOptions)
        }
        return {"pan": self.pan, "ms": list(self.ms), "out": self.out, "options": options}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FuseJob:
        """The job :meth:`to_dict` wrote (after a JSON round trip too). Options left out
        take ``FuseOptions``' defaults; an unknown key, at the top or among the options,
        or a value of the wrong type is refused with :class:`errors.OptionError`."""
        if not isinstance(data, Mapping):
            raise OptionError(f"a fuse job is a JSON object, not {type(data).__name__}")
        _refuse_unknown(data, JOB_KEYS, "fuse job key")
        for key in ("pan", "ms", "out"):
            if key not in data:
                raise OptionError(f"fuse job has no {key!r}; give pan, ms and out")
        pan, out, ms = data["pan"], data["out"], data["ms"]
        if not isinstance(pan, str) or not isinstance(out, str):
            raise OptionError("fuse job 'pan' and 'out' must be strings (file paths)")
        if not isinstance(ms, (list, tuple)) or not all(isinstance(p, str) for p in ms):
            raise OptionError("fuse job 'ms' must be a list of strings (MS file paths)")
        raw = data.get("options", {})
        if not isinstance(raw, Mapping):
            raise OptionError(f"fuse job 'options' must be an object, not {type(raw).__name__}")
        names = [f.name for f in dataclasses.fields(FuseOptions)]
        _refuse_unknown(raw, names, "fuse option")
        hints = _option_hints()
        values = {k: _from_json(v, hints.get(k, Any), k) for k, v in raw.items()}
        return cls(pan=pan, ms=tuple(ms), out=out, options=FuseOptions(**values))


def run_job(job: FuseJob, progress: Progress | None = None) -> FuseResult:
    """Run ``job`` with :func:`tiling.fuse.fuse_files` on a copy of its options
    (``fuse_files`` normalises some in place, e.g. ``dtype``; the job stays as built)."""
    return fuse_files(job.pan, list(job.ms), job.out, copy.deepcopy(job.options), progress)


def _refuse_unknown(data: Mapping[str, Any], valid: Sequence[str], kind: str) -> None:
    for key in data:
        if key not in valid:
            raise OptionError(f"unknown {kind} {key!r}; valid keys: {', '.join(valid)}")


def _option_hints() -> dict[str, Any]:
    """``FuseOptions``' field types, evaluated (the module uses postponed annotations)."""
    try:
        return typing.get_type_hints(FuseOptions)
    except Exception:  # an annotation this module cannot evaluate: check nothing
        return {}


def _members(hint: Any) -> tuple[Any, ...] | None:
    """The members of a union hint (``X | None``, ``Optional[X]``), else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def _to_json(value: Any, hint: Any, where: str) -> Any:
    """``value`` (of type ``hint``) as JSON builtins; OptionError naming ``where`` if none.
    A numpy scalar counts as its Python number (``np.float32(0)`` nodata is ``0.0``)."""
    if isinstance(value, np.generic):
        value = value.item()
    members = _members(hint)
    if members is not None:
        if value is None and type(None) in members:
            return None
        fits = [m for m in members if m is not type(None) and _fits(value, m)]
        return _to_json(value, fits[0] if fits else Any, where)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if origin is list and isinstance(value, list):
        item = args[0] if args else Any
        return [_to_json(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict and isinstance(value, dict):
        item = args[1] if len(args) == 2 else Any
        return {_json_key(k, where): _to_json(v, item, f"{where}[{k!r}]") for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, list):
        return [_to_json(v, Any, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {_json_key(k, where): _to_json(v, Any, f"{where}[{k!r}]") for k, v in value.items()}
    raise OptionError(
        f"fuse option {where} = {value!r} ({type(value).__name__}) has no JSON form; "
        "use a finite number, string, bool, None, list or string-keyed dict"
    )


def _json_key(key: Any, where: str) -> str:
    if not isinstance(key, str):
        raise OptionError(f"fuse option {where} has the key {key!r}; JSON keys are strings")
    return key


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of type ``hint`` (Any: always; a float may also be one of the
    strings ``"nan"``, ``"inf"``, ``"-inf"``, its JSON form)."""
    if hint is Any:
        return True
    members = _members(hint)
    if members is not None:
        return any(_fits(value, m) for m in members)
    if hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0] if args else Any) for v in value)
    if origin is dict:
        item = args[1] if len(args) == 2 else Any
        return isinstance(value, dict) and all(
            isinstance(k, str) and _fits(v, item) for k, v in value.items()
        )
    if hint is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
            isinstance(value, str) and value in _NON_FINITE
        )
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint this module does not know: the run checks the value


def _from_json(value: Any, hint: Any, where: str) -> Any:
    """A JSON value of option ``where`` back as ``hint``; OptionError if it does not fit."""
    if not _fits(value, hint):
        name = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        raise OptionError(
            f"fuse option {where} = {value!r} ({type(value).__name__}) is not of type {name}"
        )
    return _decode(value, hint)


def _decode(value: Any, hint: Any) -> Any:
    """``value`` (which fits ``hint``) as the Python value: floats as floats, copies."""
    members = _members(hint)
    if members is not None:
        fits = [m for m in members if _fits(value, m)]
        return _decode(value, fits[0])
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return [_decode(v, args[0] if args else Any) for v in value]
    if origin is dict:
        item = args[1] if len(args) == 2 else Any
        return {k: _decode(v, item) for k, v in value.items()}
    if hint is float:
        return _NON_FINITE[value] if isinstance(value, str) else float(value)
    return copy.deepcopy(value)
