"""The blended executor: overlapping patches read, batched, applied, blended, in order.

Used for every method whose spec says ``tiling="blended"`` (:mod:`models.protocol`): the
patches and their blend windows come from :mod:`tiling.patches`; this module runs them.

Why the pipeline: three threads overlap. A reader thread reads and stacks the next
batch, the calling thread runs ``prepared.apply`` (the forward pass, unfolded stages or
sampler steps), a writer thread blends the previous output and converts/compresses
finished strips, which the calling thread hands to the sink between batches. Reader and
writer run at a lower priority: on a machine whose cores the network already fills,
they take the idle moments instead of stalling its threads. Each stage is bounded
(queues of ``PREFETCH`` batches), so memory is set by the patch size and the scene
*width* (one band of patch rows is kept, finished rows are flushed), never by the scene
height.
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
from typing import Any

import numpy as np

from models.base import FuseContext
from models.protocol import PatchBatch, Prepared, RunSettings
from raster.scene import Scene
from tiling.engine import Progress, _current_gdal_options, default_threads
from tiling.patches import PatchPlan, batch_for_memory, cpu_patch_cap, default_overlap, plan_patches
from tiling.reader import TileReader
from tiling.windows import TileSpec

log = logging.getLogger("pansharp.deep")

Sink = Callable[[TileSpec, np.ndarray, np.ndarray], None]
#: ((r0, r1) output rows sent to the sink, the patch rows whose blend windows reach them)
Keep = tuple[tuple[int, int], range]

PREFETCH = 2  # batches read ahead of apply
POST_WORKERS = 2  # threads converting/compressing finished strips


_DONE = object()


class _Reader:
    """Reader thread: reads patches in row-major order, stacks batches into a bounded queue."""

    def __init__(
        self,
        reader: TileReader,
        plan: PatchPlan,
        batch: int,
        scale: float,
        lowres: bool = False,
        keep: Keep | None = None,
    ) -> None:
        self.reader, self.plan, self.batch = reader, plan, batch
        self.patch_rows = range(len(plan.rows.starts)) if keep is None else keep[1]
        self.lowres = lowres
        self.scale = np.float32(scale)
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(_current_gdal_options(),), name="pansharp-patch-read"
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
                ids = [(i, j) for i in self.patch_rows for j in range(len(self.plan.cols.starts))]
                for k in range(0, len(ids), self.batch):
                    if self.stop.is_set():
                        return
                    if not self._put(self._read(ids[k : k + self.batch])):
                        return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)

    def _read(self, ids: list[tuple[int, int]]) -> PatchBatch:
        n = len(ids)
        ph, pw = self.plan.shape
        b = self.reader.scene.n_bands
        ms = np.empty((n, b, ph, pw), dtype=np.float32)
        pan = np.empty((n, 1, ph, pw), dtype=np.float32)
        valid, origins, cores = [], [], []
        ratio = self.reader.scene.ratio
        lr = np.empty((n, b, -(-ph // ratio), -(-pw // ratio)), np.float32) if self.lowres else None
        for k, (i, j) in enumerate(ids):
            spec = self.plan.spec(i, j)
            t = self.reader.read(spec)
            ms[k] = t.ms
            pan[k, 0] = t.pan
            valid.append(t.valid)
            origins.append((spec.row - spec.halo, spec.col - spec.halo))
            cores.append((*self.plan.rows.span(i), *self.plan.cols.span(j)))
            if lr is not None:
                lr[k] = _fixed_count(t.samples(t.ms), lr.shape[2:])
        # The weights' normalisation, done here (off the forward pass's thread), in place;
        # non-finite values (float nodata) become 0 so they cannot spread through the net.
        for arr in (ms, pan) if lr is None else (ms, pan, lr):
            np.divide(arr, self.scale, out=arr)
            np.nan_to_num(arr, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return PatchBatch(ids, origins, ms, pan, valid, lr, cores)

    def batches(self) -> Iterator[PatchBatch]:
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
        keep: Keep | None = None,
    ) -> None:
        self.plan, self.sink, self.progress = plan, sink, progress
        self.gain = float(gain)  # normalised network output -> DN
        self.align = max(1, int(align))
        h = plan.rows.core + self.align
        w = plan.cols.length
        self.acc = np.zeros((n_bands, h, w), dtype=np.float32)
        self.wsum = np.zeros((h, w), dtype=np.float32)
        self.valid = np.zeros((h, w), dtype=bool)
        # rows sent to the sink: all, or keep[0] (the buffers then start at the first
        # patch row's core, where rows above keep[0] are incomplete and dropped)
        self.keep = None if keep is None else keep[0]
        first = 0 if keep is None else plan.rows.core_start(keep[1][0])
        self.top = first // self.align * self.align  # absolute scene row of buffer row 0
        self.row_done = [0] * len(plan.rows.starts)
        self._windows: dict[tuple[int, int], np.ndarray] = {}
        self.flushed = 0
        self.index = 0

    def _window(self, i: int, j: int) -> np.ndarray:
        r, c = self.plan.rows, self.plan.cols
        nr, nc = len(r.starts), len(c.starts)
        key = (min(i, 1) + (i == nr - 1) * 2, min(j, 1) + (j == nc - 1) * 2, r.lead(i), c.lead(j))
        w = self._windows.get(key)
        if w is None:
            w = self._windows[key] = self.plan.window(i, j)
        return w

    def add(self, i: int, j: int, out: np.ndarray, valid: np.ndarray) -> None:
        """Blend patch (i, j)'s output (B, P, P) in; flush when its patch row is complete."""
        r, c = self.plan.rows, self.plan.cols
        m_r, m_c = r.lead(i), c.lead(j)
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
            if self.keep is not None and not self.keep[0] <= self.top + r < self.keep[1]:
                continue  # outside the rows asked for: not every patch of it was blended
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
        keep: Keep | None = None,
    ) -> None:
        self.post = post
        self.blender = _Blender(plan, n_bands, self._ready, lambda done: None, align, gain, keep)
        self.inbox: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH)
        self.outbox: collections.deque[tuple[TileSpec, Future[tuple[Any, ...]]]] = (
            collections.deque()
        )
        # ``post`` (conversion, compression) of successive strips in parallel: it is most of
        # the writer's work, and after the last forward pass it is all that is left.
        self.pool = ThreadPoolExecutor(
            max_workers=POST_WORKERS,
            thread_name_prefix="pansharp-patch-post",
            initializer=_lower_priority,
        )
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.busy = 0.0
        self.thread = threading.Thread(target=self._run, name="pansharp-patch-write")

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

    def submit(self, b: PatchBatch, out: np.ndarray, sink: Callable[..., None]) -> None:
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


def patch_plan(
    scene: Scene, spec: Any, settings: RunSettings, device: Any
) -> tuple[PatchPlan, int]:
    """(patch plan, patches per batch) of a blended run: what :func:`run_blended` runs,
    and what an estimate of its compute time (``--adapt``'s default budget) must time.

    On the CPU, without ``--tile``, the patch side is capped so that the largest map
    stays under glibc's mmap ceiling (:func:`tiling.patches.cpu_patch_cap`), once freed
    activations are kept in the heap (:func:`tiling.allocator.keep_freed_memory`, set
    here as the run would), and such patches go one at a time.
    """
    on_cpu = device is None or device.type == "cpu"
    h, w = scene.out_shape
    cap = None
    if on_cpu and spec.map_bytes_per_pixel and settings.tile is None:
        from tiling.allocator import keep_freed_memory

        if keep_freed_memory():
            overlap = settings.overlap
            if overlap is None:
                overlap = default_overlap(spec.halo, spec.global_context)
            cap = cpu_patch_cap(spec.map_bytes_per_pixel, int(overlap))
    lattice = math.lcm(scene.ratio if spec.ratio_aligned else 1, max(1, int(spec.lattice)))
    phase = sample_phase(scene) if spec.ratio_aligned else (0, 0)
    plan = plan_patches(
        h, w, spec.halo, settings.tile, settings.overlap, spec.global_context, cap,
        align=lattice, phase=phase,
    )  # fmt: skip
    if cap is not None and not settings.batch_size:
        batch = 1  # stacked patches would be one activation above the mmap ceiling again
    else:
        batch = settings.batch_size or batch_for_memory(spec.bytes_per_pixel, device, plan.shape)
    return plan, max(1, min(batch, plan.count))


def run_blended(
    scene: Scene,
    prepared: Prepared,
    ctx: FuseContext,
    sink: Callable[..., None],
    *,
    settings: RunSettings | None = None,
    resampling: str = "exp",
    progress: Progress | None = None,
    align: int = 1,
    post: Callable[[TileSpec, np.ndarray, np.ndarray], Any] | None = None,
    stats: Any = None,
    rows: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Fuse ``scene`` with a prepared blended method (only output rows ``rows`` =
    [r0, r1), on the ``align`` grid, when given: :func:`patch_rows_for`).

    ``sink(spec, fused_dn, valid)`` - or ``sink(spec, post(spec, fused_dn, valid))`` when
    ``post`` is given, ``post`` running in the writer thread - gets full-width strips in
    row order, each starting on a multiple of ``align`` rows (the output block size),
    always in the calling thread. ``prepared.apply`` runs in the calling thread too.
    Returns run facts (patch, overlap, batch size, device, seconds per stage).
    """
    from models.deep.runtime import run_with_oom_fallback

    s = settings or RunSettings()
    spec = prepared.spec
    device = prepared.device
    on_cpu = device is None or device.type == "cpu"
    h, w = scene.out_shape
    plan, batch = patch_plan(scene, spec, s, device)
    keep = None
    if rows is not None:
        from tiling.executor import check_rows

        check_rows(rows, align, h)
        keep = (rows, patch_rows_for(plan, rows))
    count = plan.count if keep is None else len(keep[1]) * len(plan.cols.starts)
    batch = max(1, min(batch, count))
    total = h * w if rows is None else (rows[1] - rows[0]) * w
    report = progress or (lambda phase, done, tot: None)
    state = {"batch": batch}
    clock = {"forward": 0.0, "wait_read": 0.0, "sink": 0.0}
    done = [0]

    def infer(b: PatchBatch) -> np.ndarray:
        def call(size: int) -> np.ndarray:
            size = max(1, int(size))
            if size >= len(b):
                return prepared.apply(b)
            parts = [prepared.apply(b.subset(slice(i, i + size))) for i in range(0, len(b), size)]
            return np.concatenate(parts)

        out, used = run_with_oom_fallback(call, state["batch"], log=log.warning)
        state["batch"] = used  # later batches keep the size that fitted
        return out

    def to_sink(spec: TileSpec, *args: Any) -> None:
        t0 = time.perf_counter()
        sink(spec, *args)
        clock["sink"] += time.perf_counter() - t0
        done[0] += spec.pixels
        report("fuse", done[0], total)

    threads_before = None
    if on_cpu and device is not None:
        import torch

        threads_before = torch.get_num_threads()
        torch.set_num_threads(max(1, s.threads or default_threads()))
    reader = TileReader(scene, ctx, resampling=resampling, dtype=np.float32, stats=stats)
    report("fuse", 0, total)
    try:
        with (
            _Reader(reader, plan, batch, spec.scale, spec.needs_lowres, keep) as rd,
            _Writer(plan, scene.n_bands, align, post, spec.scale, keep) as wr,
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
        if threads_before is not None:
            import torch

            torch.set_num_threads(threads_before)
    return {
        "patch": list(plan.shape),
        "overlap": 2 * plan.rows.margin + plan.rows.ramp,
        "patches": plan.count,
        "batch_size": state["batch"],
        "device": str(device) if device is not None else "cpu",
        "exact": plan.exact,
        "seconds": {k: round(v, 3) for k, v in clock.items()},
    }


def patch_rows_for(plan: PatchPlan, rows: tuple[int, int]) -> range:
    """The patch rows whose weighted cores reach output rows [r0, r1): a row's blend is
    the sum over exactly these patches, so fusing them alone gives those rows exactly."""
    r = plan.rows
    hit = [
        i
        for i in range(len(r.starts))
        if r.core_start(i) < rows[1] and r.core_start(i) + r.core > rows[0]
    ]
    return range(hit[0], hit[-1] + 1)


def sample_phase(scene: Scene) -> tuple[int, int]:
    """Output-grid (row, col) of the first MS sample centre, modulo the ratio: where the
    scene's MS sample lattice starts (the PAN pixel nearest to MS pixel 0's centre,
    :func:`tiling.reader.sample_grid`'s ``c0``)."""
    win = scene.window
    out = []
    for (a, b), off in ((scene.row_map, win.row_off), (scene.col_map, win.col_off)):
        out.append(int(np.rint(-b / a) - int(off)) % scene.ratio)
    return out[0], out[1]


def _fixed_count(samples: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The MS samples of a ratio-aligned patch, ``shape`` of them: exactly so with an
    integer ratio; with a true ratio like 4.0002 a window may hold one sample more or
    less, cut off or repeated at its end (the last sample is beyond the kept core)."""
    rows, cols = shape
    out = samples[:, :rows, :cols]
    if out.shape[1:] != (rows, cols):
        out = np.pad(out, ((0, 0), (0, rows - out.shape[1]), (0, cols - out.shape[2])), mode="edge")
    return out


def _blend(blender: _Blender, b: PatchBatch, out: np.ndarray) -> None:
    for k, (i, j) in enumerate(b.ids):
        blender.add(i, j, out[k], b.valid[k])
