"""Running networks: device choice, mixed precision, CUDA out-of-memory fallback, inference.

These are what the tiling engine calls per batch of tiles; :mod:`models.deep.train`
re-exports them. Nothing here prints: messages go through a ``log`` callback.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from errors import OptionError

R = TypeVar("R")
PRECISIONS = ("fp32", "fp16", "bf16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(?::(\d+))?)$")


def select_device(spec: str = "auto") -> torch.device:
    """``auto|cpu|cuda|cuda:N`` -> torch.device; OptionError when CUDA is asked for but absent.

    ``auto`` takes the first CUDA device when there is one, else the CPU.
    """
    key = str(spec).strip().lower()
    m = _DEVICE_RE.match(key)
    if m is None:
        raise OptionError(f"--device {spec!r} is not valid; use auto, cpu, cuda or cuda:N")
    if key == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if key == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        why = (
            "this torch build has no CUDA support"
            if torch.version.cuda is None
            else "no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES)"
        )
        raise OptionError(
            f"--device {spec} asked for a GPU but {why} (torch {torch.__version__}); "
            f"use --device cpu or --device auto"
        )
    index = int(m.group(2) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise OptionError(
            f"--device {spec}: there are {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
        )
    return torch.device(f"cuda:{index}")


def check_precision(precision: str) -> str:
    """Validate ``--precision``."""
    p = str(precision).strip().lower()
    if p not in PRECISIONS:
        raise OptionError(f"--precision {precision!r} is not valid; use {', '.join(PRECISIONS)}")
    return p


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision context: autocast to fp16/bf16 on CUDA only, a no-op otherwise.

    On the CPU the networks run in fp32 whatever ``precision`` says: CPU autocast is
    slower than fp32 for these small convolutions and is not worth a numeric risk.
    """
    p = check_precision(precision)
    if device.type != "cuda" or p == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=_DTYPES[p])


def is_oom_error(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error (the dedicated class or a RuntimeError saying so)."""
    oom_cls = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_cls is not None and isinstance(exc, oom_cls):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def run_with_oom_fallback(
    fn: Callable[[int], R],
    batch: int,
    min_batch: int = 1,
    log: Callable[[str], None] | None = None,
) -> tuple[R, int]:
    """Call ``fn(batch)``; on CUDA out-of-memory halve the batch and retry.

    Returns ``(result, batch that worked)`` so the caller keeps using the smaller batch
    for the next tiles instead of failing again. Each retry logs one line through
    ``log``. Below ``min_batch`` an OptionError says what to change; any other error
    propagates untouched.
    """
    if batch < 1 or min_batch < 1:
        raise OptionError(f"batch sizes must be >= 1 (batch={batch}, min_batch={min_batch})")
    b = batch
    while True:
        try:
            return fn(b), b
        except Exception as exc:
            if not is_oom_error(exc):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if b <= min_batch:
                raise OptionError(
                    f"CUDA out of memory even with batch {b}: use smaller tiles, "
                    f"--precision fp16/bf16, or --device cpu"
                ) from exc
            new = max(min_batch, b // 2)
            if log is not None:
                log(f"CUDA out of memory with batch {b}; retrying with batch {new}")
            b = new


def scale_for(bit_depth: int | None) -> float:
    """Normalisation divisor 2^bit_depth - 1 (1 when the data are already floats in [0, 1])."""
    if bit_depth is None:
        return 1.0
    if not 1 <= int(bit_depth) <= 32:
        raise OptionError(f"bit depth must be in 1..32, got {bit_depth} (--bit-depth)")
    return float(2 ** int(bit_depth) - 1)


def _as_batch(ms_up: np.ndarray, pan: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(N, B, H, W) and (N, 1, H, W) views of the accepted input layouts."""
    ms = np.asarray(ms_up)
    p = np.asarray(pan)
    single = ms.ndim == 3
    if single:
        ms = ms[None]
        p = p.reshape(1, 1, *p.shape[-2:])
    elif ms.ndim == 4 and p.ndim == 3:
        p = p[:, None]
    if ms.ndim != 4 or p.ndim != 4 or p.shape[1] != 1 or p.shape[0] != ms.shape[0]:
        raise ValueError(
            f"predict: ms_up must be (N, B, H, W) or (B, H, W) and pan (N, 1, H, W), "
            f"(N, H, W) or (H, W); got {ms.shape} and {np.shape(pan)}"
        )
    if p.shape[-2:] != ms.shape[-2:]:
        raise ValueError(f"predict: PAN {p.shape[-2:]} and MS {ms.shape[-2:]} grids differ")
    return ms, p, single


def _finite(a: np.ndarray, scale: float) -> np.ndarray:
    """float32 a / scale with NaN and +-inf replaced by 0."""
    x = a.astype(np.float32) / np.float32(scale)
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def _chunks(n: int, size: int | None) -> Iterator[slice]:
    step = n if not size else max(1, int(size))
    for i in range(0, n, step):
        yield slice(i, min(n, i + step))


def predict(
    model: nn.Module,
    ms_up: np.ndarray,
    pan: np.ndarray,
    bit_depth: int | None,
    batch_size: int | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """Fuse a batch of patches: numpy DN in, float32 numpy DN out, same layout as ``ms_up``.

    Inputs are divided by ``2^bit_depth - 1`` (the normalisation the weights were
    trained with) and the output multiplied back. Non-finite inputs become 0 first so a
    nodata NaN cannot spread (LAGNet's global bias would carry it to the whole tile);
    the engine masks nodata in the output. ``batch_size`` splits N into chunks, which is
    what :func:`run_with_oom_fallback` shrinks.
    """
    ms, p, single = _as_batch(ms_up, pan)
    scale = scale_for(bit_depth)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    out = np.empty(ms.shape, dtype=np.float32)
    try:
        with torch.inference_mode(), autocast(device, precision):
            for sl in _chunks(ms.shape[0], batch_size):
                x = torch.from_numpy(_finite(ms[sl], scale))
                y = torch.from_numpy(_finite(p[sl], scale))
                res = model(x.to(device), y.to(device))
                out[sl] = res.float().cpu().numpy() * np.float32(scale)
    finally:
        model.train(was_training)
    return out[0] if single else out
