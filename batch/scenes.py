"""The scenes of a batch run and their outputs.

Inputs, in the forms ``pansharp train`` takes and one more:

- a CSV manifest with ``pan`` and ``ms`` columns (paths relative to the CSV; several MS
  files, one per band, separated by ``;``), an optional ``out`` (relative to OUTDIR)
  and ``name``, and any further column named after a ``fuse`` option (``method``,
  ``sensor``, ``nodata``, ``bit_depth``, ``weights``, ...: the option's value for that
  row, empty for the run's);
- a folder of ``NAME_pan.tif`` / ``NAME_ms.tif`` pairs;
- glob patterns of PAN files whose name holds ``_pan`` (the MS: ``_ms`` in its place).

A scene whose files are missing is still a scene: its run fails with the one-line
error and the others go on. Output names: ``out`` if the manifest gives one, else
``NAME_METHOD.tif`` in OUTDIR (``--name`` changes the pattern: ``{name}``, ``{method}``).
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from errors import InputFileError, OptionError
from tiling.fuse import FuseOptions

PAN_SUFFIXES = ("_pan.tif", "_pan.tiff")
DEFAULT_NAME = "{name}_{method}.tif"
MS_SEPARATOR = ";"
#: manifest columns that are not options
SCENE_COLUMNS = ("pan", "ms", "out", "name")
#: options a manifest row cannot set: they belong to the whole run
RUN_ONLY = ("overwrite", "creation_options", "method_options", "band_weights", "tags")


@dataclass(frozen=True)
class SceneItem:
    """One scene: a unique name, its PAN and MS files, its output and its own options."""

    name: str
    pan: str
    ms: tuple[str, ...]
    out: str
    options: dict[str, Any] = field(default_factory=dict)  # FuseOptions fields for this row


def list_scenes(
    inputs: list[str], outdir: str | Path, method: str, name_pattern: str = DEFAULT_NAME
) -> list[SceneItem]:
    """Every scene of ``inputs`` in order (see the module docstring); names made unique."""
    if not inputs:
        raise OptionError("give the scenes: a CSV manifest, a folder of pairs or PAN globs")
    found: list[tuple[str, str, tuple[str, ...], str | None, dict[str, Any]]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += [(n, pan, ms, None, {}) for n, pan, ms in _folder(p)]
        elif p.suffix.lower() == ".csv":
            if not p.is_file():
                raise InputFileError(f"manifest {item} not found; give a CSV with pan,ms columns")
            found += _manifest(p)
        else:
            matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
            if not matches:
                raise InputFileError(f"{item} matches no file; give PAN files named *_pan.tif")
            found += [(n, pan, ms, None, {}) for n, pan, ms in map(_glob_pair, matches)]
    seen: dict[str, int] = {}
    out = []
    for name, pan, ms, out_name, options in found:
        k = seen.get(name, 0)
        seen[name] = k + 1
        unique = name if k == 0 else f"{name}-{k}"
        m = str(options.get("method", method))
        target = out_name or _format(name_pattern, unique, m)
        out.append(SceneItem(unique, pan, ms, str(Path(outdir) / target), options))
    outs = [s.out for s in out]
    if len(set(outs)) != len(outs):
        dup = next(o for o in outs if outs.count(o) > 1)
        raise OptionError(
            f"two scenes would write {dup}; give each an out column or a --name with {{name}}"
        )
    return out


def _format(pattern: str, name: str, method: str) -> str:
    try:
        text = pattern.format(name=name, method=method)
    except (KeyError, IndexError, ValueError) as exc:
        raise OptionError(
            f"--name {pattern!r}: {exc}; use the fields {{name}} and {{method}}"
        ) from None
    if not text.lower().endswith((".tif", ".tiff")):
        raise OptionError(f"--name {pattern!r} gives {text!r}; end it in .tif")
    return text


def _stem(path: Path) -> str:
    low = path.name.lower()
    i = low.rfind("_pan")
    return path.name[:i] if i > 0 else path.stem


def _ms_beside(pan: Path) -> str:
    """The MS of ``NAME_pan.tif``: ``NAME_ms.tif`` (or .tiff, _MS); the .tif name if none
    exists (the scene's run then reports the missing file)."""
    stem = _stem(pan)
    cands = [pan.with_name(f"{stem}{s}{e}") for s in ("_ms", "_MS") for e in (".tif", ".tiff")]
    return str(next((c for c in cands if c.is_file()), cands[0]))


def _folder(folder: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    pans = sorted(p for p in folder.iterdir() if p.name.lower().endswith(PAN_SUFFIXES))
    if not pans:
        raise InputFileError(f"folder {folder} has no NAME_pan.tif files (with NAME_ms.tif)")
    return [(_stem(p), str(p), (_ms_beside(p),)) for p in pans]


def _glob_pair(path: str) -> tuple[str, str, tuple[str, ...]]:
    p = Path(path)
    if "_pan" not in p.name.lower():
        raise OptionError(f"{path}: a PAN file given by pattern must be named NAME_pan.tif")
    return _stem(p), str(p), (_ms_beside(p),)


def _manifest(path: Path) -> list[tuple[str, str, tuple[str, ...], str | None, dict[str, Any]]]:
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(f"cannot read manifest {path} ({exc})") from None
    header = {(k or "").strip().lower() for k in (rows[0] if rows else {})}
    if not rows or not {"pan", "ms"} <= header:
        raise OptionError(f"manifest {path} needs a header with pan and ms columns (and rows)")
    fields = {f.name: f for f in dataclasses.fields(FuseOptions)}
    unknown = sorted(header - set(SCENE_COLUMNS) - (set(fields) - set(RUN_ONLY)))
    if unknown:
        valid = sorted(set(fields) - set(RUN_ONLY))
        raise OptionError(
            f"manifest {path}: unknown column(s) {', '.join(unknown)}; besides "
            f"{', '.join(SCENE_COLUMNS)} a column is a fuse option: {', '.join(valid)}"
        )
    hints = typing.get_type_hints(FuseOptions)
    out = []
    for n, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if not row["pan"] or not row["ms"]:
            raise OptionError(f"manifest {path} line {n}: pan and ms must not be empty")
        pan = str(path.parent / row["pan"])
        ms = tuple(str(path.parent / m.strip()) for m in row["ms"].split(MS_SEPARATOR) if m)
        options = {
            k: _parse(v, hints[k], f"manifest {path} line {n} column {k}")
            for k, v in row.items()
            if k not in SCENE_COLUMNS and v != ""
        }
        name = row.get("name") or _stem(Path(pan))
        out.append((name, pan, ms, row.get("out") or None, options))
    return out


def _parse(text: str, hint: Any, where: str) -> Any:
    """A manifest cell as the option's type (int, float, str, bool; ``X | None``)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    kind = args[0]
    try:
        if kind is bool:
            low = text.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return low in ("true", "1", "yes")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
    except ValueError:
        pass
    name = getattr(kind, "__name__", str(kind))
    raise OptionError(f"{where}: {text!r} is not a {name}")
