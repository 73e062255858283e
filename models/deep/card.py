"""The weights card and the safetensors header, read without torch.

A weights file is a safetensors file (Hugging Face's format: an 8-byte little-endian
header length, a JSON header, raw tensor bytes). Unlike a pickled ``.pt``/``.pth``
checkpoint it cannot run code when opened, which is why pansharp accepts nothing else.
The *card* - what the weights are for and how they were made - lives in the header's
``__metadata__`` map (string values only), each field JSON-encoded, so any safetensors
reader can show it and ``pansharp models`` can list shipped weights without importing
torch.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from errors import WeightsError

CARD_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit

_PICKLE_ADVICE = (
    "pansharp never unpickles weights (a pickle can run arbitrary code when loaded). "
    "Use a .safetensors file written by `pansharp train`, or convert the checkpoint "
    "yourself in a trusted session with safetensors.torch.save_file()."
)


def pansharp_version() -> str:
    """The installed package version, else the source tree's pyproject version."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("pansharp")
    except PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        import tomllib

        return str(tomllib.loads(pyproject.read_text())["project"]["version"]) + "+src"
    except (ImportError, OSError, KeyError, ValueError):
        return "unknown"


@dataclass
class WeightsCard:
    """What a weights file is for (checked before use) and how it was trained (shown).

    ``kwargs`` are the network's constructor arguments, ``n_bands`` included, so the
    file alone rebuilds the network. ``bit_depth``/``scale``: inputs were divided by
    ``scale = 2^bit_depth - 1`` in training and must be at inference.
    """

    model: str
    kwargs: dict[str, Any]
    sensor: str
    band_names: list[str]
    ratio: int
    bit_depth: int | None
    scale: float
    training_scenes: list[str] = field(default_factory=list)
    steps: int = 0
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    pansharp_version: str = field(default_factory=pansharp_version)
    card_version: int = CARD_VERSION

    @property
    def n_bands(self) -> int:
        return int(self.kwargs["n_bands"])

    def to_metadata(self) -> dict[str, str]:
        """One header entry per field, each value a JSON string."""
        return {k: json.dumps(v, sort_keys=True) for k, v in asdict(self).items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], path: Path | str = "") -> WeightsCard:
        """Parse a header ``__metadata__`` map; WeightsError when it is not a pansharp card."""
        required = ("model", "kwargs", "sensor", "ratio", "scale")
        missing = [k for k in required if k not in meta]
        if missing:
            raise WeightsError(
                f"{path}: safetensors file without a pansharp card (missing "
                f"{', '.join(missing)}): it was not written by pansharp. Use weights "
                f"from `pansharp train` or pass --weights with such a file."
            )
        known = set(cls.__dataclass_fields__)
        try:
            values = {k: json.loads(v) for k, v in meta.items() if k in known}
            card = cls(**values)
            card.n_bands  # noqa: B018 - validates kwargs
        except (ValueError, TypeError, KeyError) as exc:
            raise WeightsError(f"{path}: corrupt pansharp card in the header ({exc})") from exc
        return card

    def summary(self) -> dict[str, Any]:
        """The card as a plain dict (``pansharp models``, logs)."""
        return asdict(self)


def read_header(path: Path | str) -> dict[str, Any]:
    """Validate ``path`` as a safetensors file and return its parsed JSON header.

    Refuses pickles, zip archives (``torch.save``'s format) and anything else that is
    not safetensors, with a :class:`WeightsError` saying what the file is and what to
    use instead; nothing in the file is executed or unpickled.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(
            f"weights file {p} does not exist; check the --weights path, or train "
            f"weights with `pansharp train`"
        )
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(9)
        n = struct.unpack("<Q", head[:8])[0] if len(head) == 9 else 0
        plausible = 0 < n <= min(MAX_HEADER, size - 8) and head[8:9] == b"{"
        if not plausible:
            kind = _sniff(head, p)
            if kind is not None:
                raise WeightsError(f"{p} is {kind}, not a safetensors file. {_PICKLE_ADVICE}")
            if len(head) < 9:
                raise WeightsError(f"{p} is too short to be a safetensors file ({size} bytes)")
            raise WeightsError(f"{p} is not a valid safetensors file (bad header length {n})")
        raw = head[8:] + f.read(n - 1)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WeightsError(f"{p} is not a valid safetensors file (header: {exc})") from exc
    if not isinstance(header, dict):
        raise WeightsError(f"{p} is not a valid safetensors file (header is not a map)")
    return header


def _sniff(head: bytes, p: Path) -> str | None:
    """Name a file format pansharp refuses (pickle, zip), from its first bytes.

    Only called once the bytes are known not to start a safetensors header (a valid
    header length can begin with the pickle marker 0x80).
    """
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "a zip archive (the format of torch.save: a .pt/.pth checkpoint of pickles)"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"a Python pickle (protocol {head[1]})"
    if p.suffix.lower() in {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar"}:
        return f"a {p.suffix} file (a pickle-based checkpoint, by its extension)"
    return None


def read_card(path: Path | str) -> WeightsCard:
    """The card of a weights file, without torch (validates the file first)."""
    header = read_header(path)
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise WeightsError(f"{path}: safetensors __metadata__ is not a map")
    return WeightsCard.from_metadata(meta, path)


def default_weights_path(model: str, sensor: str) -> Path:
    """Where the shipped weights for ``model`` on ``sensor`` would be (may not exist)."""
    return WEIGHTS_DIR / f"{model}_{sensor}.safetensors"


def find_default_weights(model: str, sensor: str, adaptable: bool = True) -> Path:
    """The shipped weights for ``model`` on ``sensor``; WeightsError naming the fix if none
    (``--adapt`` among the fixes only for a model that takes it: ``adaptable``)."""
    p = default_weights_path(model, sensor)
    if p.is_file():
        return p
    shipped = [_shipped_text(d) for d in list_default_weights(model)]
    have = f" Shipped for {model}: {', '.join(shipped)}." if shipped else ""
    adapt = (
        f"adapt {model} to the scene with --adapt (from shipped weights of the same bands "
        "and ratio, else trained on the scene itself; by default at most half the time of "
        "the fusion, --adapt-time S bounds it), "
        if adaptable
        else ""
    )
    raise WeightsError(
        f"no default weights for {model!r} on sensor {sensor!r} (looked for {p}).{have} "
        f"Pass --weights FILE, {adapt}or make weights with "
        f"`pansharp train -m {model} --sensor {sensor}`."
    )


def _shipped_text(d: dict[str, Any]) -> str:
    """``pnn_landsat7.safetensors (landsat7, 6 bands, ratio 2)``: what a shipped file fits."""
    if d.get("error"):
        return f"{d['path'].name} (unreadable)"
    return f"{d['path'].name} ({d['sensor']}, {d['bands']} bands, ratio {d['ratio']})"


def list_default_weights(model: str | None = None) -> list[dict[str, Any]]:
    """Shipped weights (optionally of one model): model, sensor, bands, ratio, path.

    Torch-free (reads headers only), so ``pansharp models`` can list them cheaply; a
    broken file is listed with its error instead of hiding the others. Only names of
    the form ``MODEL_SENSOR.safetensors`` are shipped weights: a training run's
    checkpoints and stage-1 priors beside them (``MODEL_SENSOR.stage1.safetensors``,
    ``.ckpt.``) are not.
    """
    out: list[dict[str, Any]] = []
    if not WEIGHTS_DIR.is_dir():
        return out
    pattern = f"{model}_*.safetensors" if model else "*.safetensors"
    for p in sorted(WEIGHTS_DIR.glob(pattern)):
        if "." in p.stem:
            continue
        try:
            card = read_card(p)
        except WeightsError as exc:
            model_part, _, sensor_part = p.stem.partition("_")
            out.append(
                {
                    "model": model_part,
                    "sensor": sensor_part,
                    "bands": None,
                    "band_names": [],
                    "ratio": None,
                    "path": p,
                    "error": str(exc),
                }
            )
            continue
        out.append(
            {
                "model": card.model,
                "sensor": card.sensor,
                "bands": card.n_bands,
                "band_names": card.band_names,
                "ratio": card.ratio,
                "path": p,
            }
        )
    return out
