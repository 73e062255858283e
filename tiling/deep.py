"""Streaming a scene through a deep network: overlapping patches, batched, blended, in order.

Why patches and not the classical tiles: a network runs best on a few large, equal-sized
inputs stacked into one batch, and its receptive field (the registry's ``halo``) decides
how much two neighbouring patches must share. Each patch gets a weight window that is

* zero in an outer ``margin`` (= the halo when the overlap allows): those pixels see
  the patch border, not the scene, so they are computed and dropped - every pixel that
  is kept equals the whole-image result;
* a cosine (Hann) ramp of ``ramp`` pixels where it meets its neighbour: the two ramps
  are complementary (sin^2 + cos^2 = 1), so where a model is not strictly local (LAGNet's
  global bias) or the user chose a smaller ``--overlap`` the patches fade into each
  other instead of leaving a seam;
* one elsewhere, and one up to the scene's own border (no neighbour to blend with).

The engine accumulates ``sum(w * out)`` and ``sum(w)`` and divides, so any overlap
(including the last patch of a row or column, shifted back to end at the scene border)
is blended correctly.

Why the pipeline: three threads overlap. A reader thread reads and stacks the next
batch, the calling thread runs the forward pass, a writer thread blends the previous
output and converts/compresses finished strips, which the calling thread hands to the
sink between forward passes. Reader and writer run at a lower priority: on a machine
whose cores the network already fills, they take the idle moments instead of stalling
its threads. Each stage is bounded (queues of ``PREFETCH`` batches), so memory is set by
the patch size and the scene *width* (one band of patch rows is kept, finished rows are
flushed), never by the scene height.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from errors import OptionError
from models.base import FuseContext
from models.registry import get_entry
from raster.scene import Scene
from tiling.engine import Progress, _current_gdal_options, default_threads
from tiling.reader import TileReader
from tiling.windows import TileSpec

log = logging.getLogger("pansharp.deep")

Sink = Callable[[TileSpec, np.ndarray, np.ndarray], None]

MIN_PATCH = 256
# Largest default patch (GPU, or CPU models too wide for cpu_patch_cap). On the CPU, once
# freed activations stay in the heap (keep_freed_memory), patches whose maps fit under
# glibc's mmap ceiling are faster: FusionNet 1.19 Mpx/s at 496^2 vs 0.85 at 1024^2.
MAX_PATCH = 1024
PATCH_PER_OVERLAP = 64  # patch >= 64 x overlap keeps the recomputed overlap under ~3 %
# One batch on the CPU (--batch-size auto): large patches go one at a time, which measured
# faster than stacking them (FusionNet 1024^2: 0.41 Mpx/s alone, 0.31 two at a time).
CPU_BUDGET_BYTES = 512 << 20
CUDA_FREE_FRACTION = 0.5  # share of the free device memory one batch may take
MAX_AUTO_BATCH = 64
PREFETCH = 2  # batches read ahead of the forward pass
POST_WORKERS = 2  # threads converting/compressing finished strips


# -- options -------------------------------------------------------------------------
@dataclass(frozen=True)
class DeepSettings:
    """The ``fuse`` options that only deep models use (all have automatic defaults)."""

    weights: str | None = None  # None: the registry's default weights for model + sensor
    device: str = "auto"
    batch_size: int | None = None  # None: from the device memory (auto)
    precision: str = "fp32"
    tile: int | None = None  # patch size in PAN pixels; None: from the receptive field
    overlap: int | None = None  # pixels shared by neighbouring patches; None: from the halo
    threads: int | None = None  # torch CPU threads; None: all cores


def parse_batch_size(text: str | int | None) -> int | None:
    """``--batch-size auto|N`` -> None (auto) or N >= 1."""
    if text is None:
        return None
    if isinstance(text, int):
        value = text
    else:
        key = str(text).strip().lower()
        if key == "auto":
            return None
        try:
            value = int(key)
        except ValueError:
            raise OptionError(f"--batch-size {text!r} must be 'auto' or a whole number") from None
    if value < 1:
        raise OptionError(f"--batch-size must be >= 1 or 'auto', got {value}")
    return value


# -- the patch plan --------------------------------------------------------------------
LOCAL_RAMP = 4  # local model, margin = halo: patches agree, a short ramp only smooths noise
GLOBAL_RAMP = 32  # global-context model (LAGNet's bias): patches disagree slightly


def default_ramp(halo: int, global_context: bool = False) -> int:
    """Blend width when the user gives no ``--overlap``.

    A local network tiled with a margin of its halo gives the same value in both patches,
    so the ramp only has to absorb float rounding; a network with global context (pooled
    statistics) gives slightly different values per patch, faded over a wider ramp.
    """
    return max(GLOBAL_RAMP, 2 * halo) if global_context else LOCAL_RAMP


def default_overlap(halo: int, global_context: bool = False) -> int:
    """``--overlap`` when the user gives none: the halo on both sides plus the ramp."""
    return 2 * halo + default_ramp(halo, global_context)


def split_overlap(overlap: int, halo: int) -> tuple[int, int]:
    """(margin, ramp) of a patch window for ``overlap`` shared pixels.

    With ``overlap >= 2 * halo + 1`` the margin is the whole halo (exact tiling) and the
    rest is the ramp. A smaller overlap cannot be exact, so it is split evenly: a quarter
    of it dropped on each side, half of it blended.
    """
    if overlap < 0:
        raise OptionError(f"--overlap must be >= 0, got {overlap}")
    if overlap >= 2 * halo + 1:
        return halo, overlap - 2 * halo
    margin = overlap // 4
    return margin, overlap - 2 * margin


def default_patch(overlap: int) -> int:
    """Patch side for an overlap: large enough that the overlap costs little, in 128 steps."""
    want = PATCH_PER_OVERLAP * max(overlap, 1)
    return int(min(MAX_PATCH, max(MIN_PATCH, math.ceil(want / 128) * 128)))


@dataclass(frozen=True)
class AxisPlan:
    """Patches along one axis: read-window starts (may be < 0) and one shared length."""

    length: int  # scene pixels on this axis
    patch: int  # read-window length of every patch on this axis
    margin: int
    ramp: int
    starts: tuple[int, ...]

    @property
    def core(self) -> int:
        """Pixels of a patch with non-zero weight."""
        return self.patch - 2 * self.margin

    def core_start(self, i: int) -> int:
        return self.starts[i] + self.margin

    def weights(self, i: int) -> np.ndarray:
        """1-D window of patch ``i``: 0 in the margin, cosine ramps towards neighbours."""
        w = np.zeros(self.patch, dtype=np.float32)
        m, c = self.margin, self.core
        w[m : m + c] = 1.0
        r = min(self.ramp, c)
        if r > 0:
            t = (np.arange(r, dtype=np.float64) + 0.5) / r
            up = (np.sin(0.5 * np.pi * t) ** 2).astype(np.float32)
            if i > 0:
                w[m : m + r] = up
            if i < len(self.starts) - 1:
                w[m + c - r : m + c] = up[::-1]
        return w


STRETCH = 1.15  # a patch may grow this much if it saves a whole row/column of patches


def plan_axis(
    length: int, patch: int, margin: int, ramp: int, stretch: float = STRETCH
) -> AxisPlan:
    """Cover ``length`` pixels with as few patches as fit, all of one size, evenly spread.

    Why balanced: with a fixed size the last patch is mostly wasted (4000 pixels with
    1024-pixel patches and a 30-pixel overlap need 5 patches, 28 % more computation
    than the scene); here the count is the smallest that covers ``length`` with patches
    at most ``STRETCH`` x ``patch``, and the cores shrink to share the length evenly
    (4 patches of 1028). Consecutive cores overlap by at least ``ramp``; the last core
    ends exactly at the scene border, no patch reaches past it further than its margin.
    """
    core_max = patch - 2 * margin
    if core_max <= ramp:
        raise OptionError(
            f"--tile {patch} is too small for an overlap of {2 * margin + ramp} pixels; "
            f"use a --tile larger than {2 * (2 * margin + ramp)} or a smaller --overlap"
        )
    if length <= int(core_max * stretch):
        return AxisPlan(length, length + 2 * margin, margin, ramp, (-margin,))
    stretched = max(core_max, int(core_max * stretch))
    n = max(2, math.ceil((length - ramp) / (stretched - ramp)))
    core = math.ceil((length + (n - 1) * ramp) / n)
    starts = [k * (core - ramp) for k in range(n - 1)] + [length - core]
    return AxisPlan(length, core + 2 * margin, margin, ramp, tuple(s - margin for s in starts))


@dataclass(frozen=True)
class PatchPlan:
    """The whole scene's patches: row and column plans (row-major order)."""

    rows: AxisPlan
    cols: AxisPlan
    halo: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.patch, self.cols.patch

    @property
    def count(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)

    @property
    def exact(self) -> bool:
        """True when every kept pixel sees its whole receptive field (tiled == whole)."""
        return self.rows.margin >= self.halo and self.cols.margin >= self.halo

    def spec(self, i: int, j: int) -> TileSpec:
        """Reader window of patch (i, j): its core plus the margin on every side."""
        r, c = self.rows, self.cols
        return TileSpec(
            index=i * len(c.starts) + j,
            row=r.core_start(i),
            col=c.core_start(j),
            height=r.core,
            width=c.core,
            halo=r.margin,
        )

    def window(self, i: int, j: int) -> np.ndarray:
        return np.outer(self.rows.weights(i), self.cols.weights(j))


def map_widths(model: Any, n_bands: int) -> tuple[int, int]:
    """(widest convolution output, or the band count; largest ``transient_channels`` a
    module declares): the channel counts that set a forward pass's memory per pixel."""
    from torch import nn

    modules = list(model.modules())
    widest = max([m.out_channels for m in modules if isinstance(m, nn.Conv2d)] + [n_bands])
    transient = max([int(getattr(m, "transient_channels", 0)) for m in modules] + [0])
    return widest, transient


def cpu_patch_cap(model: Any, n_bands: int, overlap: int) -> int | None:
    """Largest patch side (a multiple of 16) whose widest activation stays under glibc's
    mmap ceiling, or None when that patch would be too small for the overlap.

    With :func:`tiling.allocator.keep_freed_memory`, activations under the ceiling are
    reused from the heap patch after patch instead of being faulted in and zeroed anew;
    the smaller patches recompute more overlap, so the cap applies only when the patch
    is at least 16 x the overlap (under ~13 % recomputed pixels). FusionNet/PanNet: 496,
    PNN/DiCNN (64 maps): 352; LAGNet (288 tap maps per LAGConv): none.
    """
    from tiling.allocator import GLIBC_MMAP_CEILING

    conv, transient = map_widths(model, n_bands)
    widest = max(conv, transient // 2)  # LAGConv's transient: its tap maps, twice
    px = (GLIBC_MMAP_CEILING - (64 << 10)) // (4 * widest)
    side = int(math.isqrt(px)) // 16 * 16
    return side if side >= max(MIN_PATCH, 16 * overlap) else None


def plan_patches(
    height: int,
    width: int,
    halo: int,
    tile: int | None = None,
    overlap: int | None = None,
    global_context: bool = False,
    max_patch: int | None = None,
) -> PatchPlan:
    """Patch plan for a scene; ``tile``/``overlap`` default from the receptive field
    (``max_patch`` caps that default, see :func:`cpu_patch_cap`)."""
    if overlap is None:
        overlap = default_overlap(halo, global_context)
    margin, ramp = split_overlap(int(overlap), halo)
    patch = int(tile) if tile is not None else default_patch(2 * margin + ramp)
    stretch = STRETCH
    if tile is None and max_patch is not None:
        patch, stretch = min(patch, int(max_patch)), 1.0  # a hard cap: no stretching past it
    if patch < 8:
        raise OptionError(f"--tile must be >= 8 for deep models, got {patch}")
    if overlap > patch // 2:
        raise OptionError(
            f"--overlap {overlap} is more than half of --tile {patch}; use a larger --tile"
        )
    rows = plan_axis(height, patch, margin, ramp, stretch)
    cols = plan_axis(width, patch, margin, ramp, stretch)
    return PatchPlan(rows, cols, halo)


# -- loading -----------------------------------------------------------------------------
@dataclass
class DeepModel:
    """A network with its weights loaded, on its device, and the card it came with."""

    name: str
    model: Any  # torch.nn.Module (torch is imported lazily)
    card: Any  # models.deep.card.WeightsCard
    path: Path
    device: Any  # torch.device
    halo: int
    settings: DeepSettings = field(default_factory=DeepSettings)
    global_context: bool = False  # pooled statistics: tiles differ slightly, blend wider
    warnings: list[str] = field(default_factory=list)  # for the run's summary and JSON

    def tags(self) -> dict[str, str]:
        """Output metadata: which weights made the image."""
        return {
            "PANSHARP_WEIGHTS": self.path.name,
            "PANSHARP_WEIGHTS_SENSOR": str(self.card.sensor),
            "PANSHARP_WEIGHTS_STEPS": str(self.card.steps),
        }


def load_deep(
    method: str, scene: Scene, sensor_name: str, settings: DeepSettings, bit_depth: int | None
) -> DeepModel:
    """Resolve and check the weights for ``method`` on ``scene``, before any output exists.

    ``--weights FILE``, else the registry's default for (model, sensor): the card must
    match the scene's bands, ratio and sensor (:func:`models.deep.weights.check_card`
    names every mismatch). That decision reads the safetensors header only, so weights
    that do not fit are refused before torch is imported (~3 s, ~280 MB); torch, the
    device and the tensors come after. A scene bit depth other than the one the weights
    were trained with is only warned about: the data may still be in the same range.
    """
    entry = get_entry(method)
    path = fitting_weights(scene, entry.info.name, sensor_name, settings.weights)

    from models.deep.runtime import check_precision, select_device
    from models.deep.weights import load_weights

    check_precision(settings.precision)
    device = select_device(settings.device)
    model, card = load_weights(
        path, entry.info.name, scene.n_bands, scene.ratio, sensor_name, device=device
    )
    warnings = []
    if card.bit_depth and bit_depth and card.bit_depth != bit_depth:
        warnings.append(
            f"weights {path.name} were trained on {card.bit_depth}-bit data, the scene is "
            f"{bit_depth}-bit; pass --bit-depth if that is wrong"
        )
    halo = int(getattr(model, "halo", entry.info.halo(scene.ratio)))
    glob = (
        bool(entry.info.extra.get("global_context")) and card.kwargs.get("global_bias") is not False
    )
    return DeepModel(
        entry.info.name, model, card, Path(path), device, halo, settings, glob, warnings
    )


# -- batch size ----------------------------------------------------------------------------
def patch_bytes(model: Any, n_bands: int, shape: tuple[int, int], bytes_per_value: int) -> int:
    """Rough peak memory of one patch in a forward pass (inference: no stored activations).

    Six maps of the widest convolution (input, output, residual, ReLU and the allocator's
    slack) plus the inputs and output, plus the largest transient a module declares
    (``transient_channels``: LAGConv's k^2 x C_out tap responses). Measured peaks per
    pixel of the five baselines stay below it (tests/test_deep_memory.py).
    """
    widest, transient = map_widths(model, n_bands)
    px = shape[0] * shape[1]
    return int((6 * widest + transient + 3 * n_bands + 1) * px * bytes_per_value)


def auto_batch(
    model: Any, device: Any, n_bands: int, shape: tuple[int, int], precision: str
) -> int:
    """``--batch-size auto``: free device memory on CUDA, a fixed budget on the CPU."""
    half = device.type == "cuda" and precision != "fp32"
    per = max(1, patch_bytes(model, n_bands, shape, 2 if half else 4))
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        budget = int(free * CUDA_FREE_FRACTION)
    else:
        budget = CPU_BUDGET_BYTES
    return int(max(1, min(MAX_AUTO_BATCH, budget // per)))


# -- the engine ------------------------------------------------------------------------------
@dataclass
class _Batch:
    """Patches read and stacked: positions, network inputs, validity of the core pixels."""

    ids: list[tuple[int, int]]
    ms: np.ndarray  # (N, B, P, P) float32, normalised (DN / scale)
    pan: np.ndarray  # (N, 1, P, P) float32, normalised
    valid: list[np.ndarray]  # per patch, (P, P) bool


_DONE = object()


class _Reader:
    """Reader thread: reads patches in row-major order, stacks batches into a bounded queue."""

    def __init__(self, reader: TileReader, plan: PatchPlan, batch: int, scale: float) -> None:
        self.reader, self.plan, self.batch = reader, plan, batch
        self.scale = np.float32(scale)
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(_current_gdal_options(),), name="pansharp-deep-read"
        )

    def __enter__(self) -> _Reader:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        while self.thread.is_alive():  # unblock a reader waiting on a full queue
            try:
                self.queue.get_nowait()
            except queue.Empty:
                pass
            self.thread.join(timeout=0.05)

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, gdal_options: dict[str, Any]) -> None:
        import rasterio
        from threadpoolctl import threadpool_limits

        _lower_priority()
        try:
            # BLAS threads in the MS resampling would fight torch's threads for the cores.
            with rasterio.Env(**gdal_options), threadpool_limits(limits=1, user_api="blas"):
                ids = [
                    (i, j)
                    for i in range(len(self.plan.rows.starts))
                    for j in range(len(self.plan.cols.starts))
                ]
                for k in range(0, len(ids), self.batch):
                    if self.stop.is_set():
                        return
                    if not self._put(self._read(ids[k : k + self.batch])):
                        return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)

    def _read(self, ids: list[tuple[int, int]]) -> _Batch:
        n = len(ids)
        ph, pw = self.plan.shape
        b = self.reader.scene.n_bands
        ms = np.empty((n, b, ph, pw), dtype=np.float32)
        pan = np.empty((n, 1, ph, pw), dtype=np.float32)
        valid = []
        for k, (i, j) in enumerate(ids):
            t = self.reader.read(self.plan.spec(i, j))
            ms[k] = t.ms
            pan[k, 0] = t.pan
            valid.append(t.valid)
        # The weights' normalisation, done here (off the forward pass's thread), in place;
        # non-finite values (float nodata) become 0 so they cannot spread through the net.
        for arr in (ms, pan):
            np.divide(arr, self.scale, out=arr)
            np.nan_to_num(arr, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return _Batch(ids, ms, pan, valid)

    def batches(self) -> Iterator[_Batch]:
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class _Blender:
    """Accumulates weighted outputs for one band of patch rows and flushes finished rows.

    The buffers span the scene width and one patch core (plus ``align``) in height; rows
    above the next patch row's first weighted row can no longer change and go to
    ``sink``, cut at a multiple of ``align`` rows so that every strip starts on an
    output block row (the streaming COG writer compresses whole blocks once).
    """

    def __init__(
        self,
        plan: PatchPlan,
        n_bands: int,
        sink: Sink,
        progress: Callable[[int], None],
        align: int = 1,
        gain: float = 1.0,
    ) -> None:
        self.plan, self.sink, self.progress = plan, sink, progress
        self.gain = float(gain)  # normalised network output -> DN
        self.align = max(1, int(align))
        h = plan.rows.core + self.align
        w = plan.cols.length
        self.acc = np.zeros((n_bands, h, w), dtype=np.float32)
        self.wsum = np.zeros((h, w), dtype=np.float32)
        self.valid = np.zeros((h, w), dtype=bool)
        self.top = 0  # absolute scene row of buffer row 0
        self.row_done = [0] * len(plan.rows.starts)
        self._windows: dict[tuple[int, int], np.ndarray] = {}
        self.flushed = 0
        self.index = 0

    def _window(self, i: int, j: int) -> np.ndarray:
        nr, nc = len(self.plan.rows.starts), len(self.plan.cols.starts)
        key = (min(i, 1) + (i == nr - 1) * 2, min(j, 1) + (j == nc - 1) * 2)
        w = self._windows.get(key)
        if w is None:
            w = self._windows[key] = self.plan.window(i, j)
        return w

    def add(self, i: int, j: int, out: np.ndarray, valid: np.ndarray) -> None:
        """Blend patch (i, j)'s output (B, P, P) in; flush when its patch row is complete."""
        r, c = self.plan.rows, self.plan.cols
        m_r, m_c = r.margin, c.margin
        core_r = slice(m_r, m_r + r.core)
        core_c = slice(m_c, m_c + c.core)
        y0 = r.core_start(i) - self.top
        x0 = c.core_start(j)
        rows = slice(y0, y0 + r.core)
        cols = slice(x0, x0 + c.core)
        w = self._window(i, j)[core_r, core_c]
        part = out[:, core_r, core_c]  # the engine's own copy: weighted in place
        np.multiply(part, w, out=part)
        self.acc[:, rows, cols] += part
        self.wsum[rows, cols] += w
        self.valid[rows, cols] = valid[core_r, core_c]
        self.row_done[i] += 1
        if self.row_done[i] == len(c.starts):
            last = i == len(r.starts) - 1
            end = r.length if last else r.core_start(i + 1) // self.align * self.align
            self._flush(end)

    def _flush(self, end: int) -> None:
        """Send scene rows [top, end) to the sink and move the rest of the band up."""
        n = end - self.top
        if n <= 0:
            return
        w = self.wsum[:n]
        fused = self.acc[:, :n] * (np.float32(self.gain) / np.where(w > 0, w, np.float32(1)))
        step = self.align if self.align > 1 else n  # block-row strips: prepared in parallel
        for r in range(0, n, step):
            k = min(step, n - r)
            spec = TileSpec(self.index, self.top + r, 0, k, self.plan.cols.length, 0)
            self.sink(spec, fused[:, r : r + k], self.valid[r : r + k].copy())
            self.index += 1
        keep = self.acc.shape[1] - n
        for buf in (self.acc[:], self.wsum[None], self.valid[None]):
            buf[:, :keep] = buf[:, n:]
            buf[:, keep:] = 0
        self.top = end
        self.flushed += n * self.plan.cols.length
        self.progress(self.flushed)


class _Writer:
    """Writer thread: blends forward outputs and prepares finished strips for the sink.

    It runs below the forward pass's priority (:func:`_lower_priority`), so blending,
    conversion and compression fill the cores' idle moments instead of stalling the
    network's threads. Prepared strips wait in an unbounded queue that the calling
    thread drains between forward passes: the sink (the COG writer) is only ever called
    from the calling thread.
    """

    def __init__(
        self,
        plan: PatchPlan,
        n_bands: int,
        align: int,
        post: Callable[[TileSpec, np.ndarray, np.ndarray], Any] | None,
        gain: float = 1.0,
    ) -> None:
        self.post = post
        self.blender = _Blender(plan, n_bands, self._ready, lambda done: None, align, gain)
        self.inbox: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH)
        self.outbox: collections.deque[tuple[TileSpec, Future[tuple[Any, ...]]]] = (
            collections.deque()
        )
        # ``post`` (conversion, compression) of successive strips in parallel: it is most of
        # the writer's work, and after the last forward pass it is all that is left.
        self.pool = ThreadPoolExecutor(
            max_workers=POST_WORKERS,
            thread_name_prefix="pansharp-deep-post",
            initializer=_lower_priority,
        )
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.busy = 0.0
        self.thread = threading.Thread(target=self._run, name="pansharp-deep-write")

    def __enter__(self) -> _Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.inbox.get_nowait()
            except queue.Empty:
                pass
            self.thread.join(timeout=0.05)
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _prepare(self, spec: TileSpec, fused: np.ndarray, valid: np.ndarray) -> tuple[Any, ...]:
        return (self.post(spec, fused, valid),) if self.post else (fused, valid)

    def _ready(self, spec: TileSpec, fused: np.ndarray, valid: np.ndarray) -> None:
        self.outbox.append((spec, self.pool.submit(self._prepare, spec, fused, valid)))

    def _run(self) -> None:
        _lower_priority()
        try:
            while not self.stop.is_set():
                try:
                    item = self.inbox.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _DONE:
                    return
                t0 = time.perf_counter()
                _blend(self.blender, *item)
                self.busy += time.perf_counter() - t0
        except BaseException as exc:  # re-raised in the calling thread
            self.error = exc

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, b: _Batch, out: np.ndarray, sink: Callable[..., None]) -> None:
        """Queue a batch for blending; while the queue is full, keep the sink fed."""
        while True:
            self._check()
            try:
                self.inbox.put((b, out), timeout=0.05)
                return
            except queue.Full:
                self.drain(sink)

    def drain(self, sink: Callable[..., None], wait: bool = False) -> None:
        """Hand prepared strips to ``sink`` in row order (in the calling thread); stop at
        the first one still being prepared unless ``wait``."""
        while self.outbox:
            spec, fut = self.outbox[0]
            if not wait and not fut.done():
                return
            args = fut.result()
            self.outbox.popleft()
            sink(spec, *args)

    def finish(self, sink: Callable[..., None]) -> None:
        """Wait for the last batches and feed their strips to ``sink``."""
        while True:
            self._check()
            try:
                self.inbox.put(_DONE, timeout=0.05)
                break
            except queue.Full:
                self.drain(sink)
        while self.thread.is_alive():
            self.thread.join(timeout=0.05)
            self.drain(sink)
        self._check()
        self.drain(sink, wait=True)


def _lower_priority(nice: int = 5) -> None:
    """Lower this thread's scheduling priority (Linux threads have their own nice value).

    The forward pass is the bottleneck; reading and writing only have to keep up, so
    they yield the cores to it instead of pre-empting one of its synchronised OpenMP
    threads (which stalls the others at the next barrier). Elsewhere: a no-op.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except (OSError, AttributeError):
        pass


def run_deep(
    scene: Scene,
    deep: DeepModel,
    ctx: FuseContext,
    sink: Callable[..., None],
    *,
    resampling: str = "exp",
    progress: Progress | None = None,
    align: int = 1,
    post: Callable[[TileSpec, np.ndarray, np.ndarray], Any] | None = None,
    stats: Any = None,
) -> dict[str, Any]:
    """Fuse ``scene`` with a loaded network.

    ``sink(spec, fused_dn, valid)`` - or ``sink(spec, post(spec, fused_dn, valid))`` when
    ``post`` is given, ``post`` running in the writer thread - gets full-width strips in
    row order, each starting on a multiple of ``align`` rows (the output block size),
    always in the calling thread. The forward pass runs in the calling thread too.
    Returns run facts (patch, overlap, batch size, device, seconds per stage).
    """
    import torch

    from models.deep.runtime import run_with_oom_fallback, scale_for

    s = deep.settings
    h, w = scene.out_shape
    cap = None
    if deep.device.type == "cpu":
        from tiling.allocator import keep_freed_memory

        if keep_freed_memory() and s.tile is None:
            overlap = s.overlap
            if overlap is None:
                overlap = default_overlap(deep.halo, deep.global_context)
            cap = cpu_patch_cap(deep.model, scene.n_bands, int(overlap))
    plan = plan_patches(h, w, deep.halo, s.tile, s.overlap, deep.global_context, cap)
    if cap is not None and not s.batch_size:
        batch = 1  # stacked patches would be one activation above the mmap ceiling again
    else:
        batch = s.batch_size or auto_batch(
            deep.model, deep.device, scene.n_bands, plan.shape, s.precision
        )
    batch = max(1, min(batch, plan.count))
    total = h * w
    report = progress or (lambda phase, done, tot: None)
    card = deep.card
    scale = scale_for(card.bit_depth) if card.bit_depth is not None else float(card.scale or 1)
    state = {"batch": batch}
    clock = {"forward": 0.0, "wait_read": 0.0, "sink": 0.0}
    done = [0]

    def infer(b: _Batch) -> np.ndarray:
        def call(size: int) -> np.ndarray:
            return _forward(deep.model, b.ms, b.pan, size, s.precision)

        out, used = run_with_oom_fallback(call, state["batch"], log=log.warning)
        state["batch"] = used  # later batches keep the size that fitted
        return out

    def to_sink(spec: TileSpec, *args: Any) -> None:
        t0 = time.perf_counter()
        sink(spec, *args)
        clock["sink"] += time.perf_counter() - t0
        done[0] += spec.pixels
        report("fuse", done[0], total)

    deep.model.eval()  # no dropout or batch statistics at inference, whoever built it
    threads_before = torch.get_num_threads()
    if deep.device.type == "cpu":
        torch.set_num_threads(max(1, s.threads or default_threads()))
    reader = TileReader(scene, ctx, resampling=resampling, dtype=np.float32, stats=stats)
    report("fuse", 0, total)
    try:
        with (
            _Reader(reader, plan, batch, scale) as rd,
            _Writer(plan, scene.n_bands, align, post, scale) as wr,
        ):
            batches = rd.batches()
            while True:
                t0 = time.perf_counter()
                b = next(batches, None)
                clock["wait_read"] += time.perf_counter() - t0
                if b is None:
                    break
                t0 = time.perf_counter()
                out = infer(b)
                clock["forward"] += time.perf_counter() - t0
                wr.submit(b, out, to_sink)
                wr.drain(to_sink)
            wr.finish(to_sink)
            clock["blend_write"] = wr.busy
    finally:
        reader.close()
        torch.set_num_threads(threads_before)
    return {
        "patch": list(plan.shape),
        "overlap": 2 * plan.rows.margin + plan.rows.ramp,
        "patches": plan.count,
        "batch_size": state["batch"],
        "device": str(deep.device),
        "exact": plan.exact,
        "seconds": {k: round(v, 3) for k, v in clock.items()},
    }


def _forward(model: Any, ms: np.ndarray, pan: np.ndarray, chunk: int, precision: str) -> np.ndarray:
    """The network on normalised inputs, ``chunk`` patches at a time; normalised output.

    Only the forward pass runs here (the calling thread's critical path): inputs were
    normalised by the reader, the output is rescaled by the writer while blending. On the
    CPU, inputs and output are shared with torch without copies.
    """
    import torch

    from models.deep.runtime import autocast

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    outs = []
    step = max(1, int(chunk))
    with torch.inference_mode(), autocast(device, precision):
        for i in range(0, ms.shape[0], step):
            x = torch.from_numpy(ms[i : i + step]).to(device)
            y = torch.from_numpy(pan[i : i + step]).to(device)
            outs.append(model(x, y).float().cpu().numpy())
    return outs[0] if len(outs) == 1 else np.concatenate(outs)


def _blend(blender: _Blender, b: _Batch, out: np.ndarray) -> None:
    for k, (i, j) in enumerate(b.ids):
        blender.add(i, j, out[k], b.valid[k])


# -- the entry points of tiling.fuse ----------------------------------------------------------
def fitting_weights(scene: Scene, name: str, sensor_name: str, weights: str | None) -> Path:
    """The weights file for model ``name`` on ``scene`` (``weights`` or the shipped
    default), its card checked against the scene's bands, ratio and sensor from the
    safetensors header alone, without torch; raises naming every mismatch."""
    from models.deep.weights import check_card, read_card, resolve_weights

    path = resolve_weights(weights, name, sensor_name)
    check_card(read_card(path), path, name, scene.n_bands, scene.ratio, sensor_name)
    return Path(path)


def weights_fit(pan: str, ms: list[str], opts: Any) -> bool:
    """True when ``opts.method`` (a :class:`tiling.fuse.FuseOptions`) is a deep model whose
    weights fit the scene, decided from the raster and safetensors headers, without torch.

    For the CLI, which imports torch before the run when it will be needed, so that the
    run's own clock and the progress bar's frozen imports do not include that import;
    any problem (a missing file, weights that do not fit) gives False, and the run then
    reports it in its own order, as :func:`tiling.fuse.fuse_files` would without this.
    """
    from errors import PansharpError
    from raster.scene import open_scene
    from tiling.fuse import resolve_sensor

    try:
        info = get_entry(opts.method).info
        if not info.needs_weights:
            return False
        scene = open_scene(pan, ms, ratio=opts.ratio, nodata=opts.nodata)
        fitting_weights(scene, info.name, resolve_sensor(scene, opts.sensor).name, opts.weights)
    except PansharpError:
        return False
    return True


def load_for_fuse(scene: Scene, sensor_name: str, opts: Any, bit_depth: int | None) -> DeepModel:
    """:func:`load_deep` with the deep fields of a :class:`tiling.fuse.FuseOptions`."""
    settings = DeepSettings(
        weights=opts.weights,
        device=opts.device,
        batch_size=parse_batch_size(opts.batch_size),
        precision=opts.precision,
        tile=opts.patch,
        overlap=opts.overlap,
        threads=opts.threads,
    )
    if settings.tile is not None or settings.overlap is not None:  # fail before any output
        plan_patches(
            *scene.out_shape,
            get_entry(opts.method).info.halo(scene.ratio),
            settings.tile,
            settings.overlap,
        )
    return load_deep(opts.method, scene, sensor_name, settings, bit_depth)


def run_deep_method(
    scene: Scene,
    method_name: str,
    ctx: FuseContext,
    sink: Callable[..., None],
    deep: DeepModel | None,
    resampling: str,
    align: int,
    progress: Progress | None,
    post: Callable[[TileSpec, np.ndarray, np.ndarray], Any] | None,
    stats: Any = None,
) -> dict[str, Any]:
    """:func:`tiling.fuse.run_method` for a deep model: ``post`` (conversion, compression)
    runs in the writer thread on each strip while the next forward pass runs, ``sink`` in
    this thread."""
    name = get_entry(method_name).info.name
    if deep is None or deep.name != name:
        raise OptionError(
            f"-m {name} is a deep model: load its weights first (tiling.deep.load_deep, "
            f"or --weights FILE with `pansharp fuse`)"
        )
    return run_deep(
        scene,
        deep,
        ctx,
        sink,
        resampling=resampling,
        progress=progress,
        align=align,
        post=post,
        stats=stats,
    )
