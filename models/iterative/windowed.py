"""Diffusion on windows fixed to the scene's grid: seam-free and independent of ``--tile``.

Why: a diffusion network whose receptive field is its whole input (NODiff's Fourier
operator; KSDiff's latent, pooled over the patch) gives each patch an answer that
depends on where the patch starts and ends, so tiling by ``--tile`` would change the
image and leave seams. Here the network never sees the engine's patches. Every patch is
cut into ``window`` x ``window`` windows whose origins are multiples of ``stride =
window / 2`` in *absolute* PAN pixels; each window runs the whole reverse process on its
own, from noise drawn by absolute position (:func:`models.iterative.noise.
positional_noise`), and the windows are blended with the separable Hann window

    w(x) = sin^2(pi (x + 1/2) / window),   x = 0 .. window - 1,

which sums to one over the two windows that hold any pixel on each axis
(``sin^2 + cos^2 = 1``), and is near zero at a window's border, where the FFT's periodic
wrap or the latent's edge would show. A window is computed only if it lies wholly
inside the patch; with the patch margin (the spec's halo) set to ``window``, every kept
pixel has all four of its windows, and two patches compute the same windows from the
same inputs and noise: the blended value is a function of the scene, the seed and the
step count alone (up to float rounding of differently sized batches).

A network may blend over a shorter ``window_ramp`` ``R`` (default ``window / 2``, the
Hann window above): windows are then ``stride = window - R`` apart and weigh

    w(x) = sin^2(pi (x + 1/2) / (2 R))  for x < R,  1 in the middle,  mirrored at the end,

again a partition of unity (each ramp meets its neighbour's complement), with
``(window / stride)^2`` windows per pixel instead of 4 (NODiff: 64-pixel windows,
16-pixel ramps, 1.78; KSDiff: 8-pixel ramps, 1.31): worth it where only the window's
border is unreliable (zero padding), not for a global operator whose wrap-around
touches the whole window.

The network provides ``generate(ms_up, pan, scheduler, noise) -> fused`` for a batch of
windows (the DDIM step rule stays in the scheduler); ``noise(step, channels, spatial)``
returns the standard normal draw of that step for each window: per pixel
``(N, channels, window, window)`` when ``spatial``, else one vector per window
``(N, channels)`` keyed by the window's origin (a latent's noise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from errors import WeightsError
from models.deep.method import DeepModel, fitting_weights, prepare_network
from models.protocol import MethodSpec, PatchBatch, PrepareContext
from models.registry import Entry, ModelInfo, register_model

#: Bytes the windows of one forward pass may take (``MAPS_PER_WIDTH`` fp32 maps per
#: feature channel each), on a GPU and on the CPU. The CPU's is small on purpose: with
#: the maps of a few windows in the processor's cache, forwards of 64 windows of 64^2
#: took 1.77 x (KSDiff) and 1.73 x (NODiff) the time per window of the 12 and 16 that
#: this budget gives, which were within 1.5 % of the best size measured
#: (``python3 benchmarks/window_chunks.py``, 2 cores, 5 steps).
WINDOW_BUDGET_BYTES = 256 << 20
WINDOW_CPU_BUDGET_BYTES = 48 << 20
MAPS_PER_WIDTH = 8  # activations alive per feature channel in a denoiser step


def windows_per_forward(window: int, width: int, device_type: str) -> int:
    """Windows of side ``window`` whose ``MAPS_PER_WIDTH x width`` fp32 maps fit in one
    forward's budget: :data:`WINDOW_CPU_BUDGET_BYTES` on the CPU, else
    :data:`WINDOW_BUDGET_BYTES`."""
    per = window**2 * 4 * MAPS_PER_WIDTH * max(width, 1)
    budget = WINDOW_CPU_BUDGET_BYTES if device_type == "cpu" else WINDOW_BUDGET_BYTES
    return max(1, budget // per)


def blend_weights(window: int, ramp: int | None = None) -> np.ndarray:
    """The 1-D blend weights of a window (float64): ``sin^2`` ramps of ``ramp`` pixels
    (default ``window / 2``: the Hann window ``sin^2(pi (x + 1/2) / window)``) at both
    ends, one in between."""
    r = window // 2 if ramp is None else int(ramp)
    w = np.ones(window, dtype=np.float64)
    up = np.sin(np.pi * (np.arange(r, dtype=np.float64) + 0.5) / (2 * r)) ** 2
    w[:r] = up
    w[window - r :] = up[::-1]
    return w


def window_starts(origin: int, length: int, window: int, stride: int | None = None) -> list[int]:
    """Absolute starts (multiples of ``stride``, default ``window / 2``) of the windows
    wholly inside ``[origin, origin + length)``."""
    stride = window // 2 if stride is None else int(stride)
    first = -(-origin // stride) * stride
    return list(range(first, origin + length - window + 1, stride))


@dataclass
class WindowedDiffusion(DeepModel):
    """A prepared diffusion network run on grid windows (module docstring)."""

    scheduler: Any = None
    describe: str = "ddim"

    @property
    def window(self) -> int:
        return int(self.model.window)

    @property
    def ramp(self) -> int:
        return int(getattr(self.model, "window_ramp", self.window // 2))

    @property
    def steps(self) -> int:
        return int(self.scheduler.steps)

    @property
    def spec(self) -> MethodSpec:
        net = super().spec
        n = int(self.card.kwargs.get("n_bands", 1))
        # patch arrays besides the inputs: the blended residual, its weights, the
        # windows' copies of the inputs (each pixel is in four windows)
        per_px = 4 * (2 * n + 1) + 4 * 4 * (2 * n + 1)
        return dataclasses.replace(
            net, halo=self.window, bytes_per_pixel=per_px, map_bytes_per_pixel=0, stochastic=True
        )

    def tags(self) -> dict[str, str]:
        return {
            **super().tags(),
            "PANSHARP_SAMPLER_STEPS": str(self.steps),
            "PANSHARP_SEED": str(int(self.settings.seed)),
            "PANSHARP_SCHEDULER": self.describe,
            "PANSHARP_WINDOW": (
                f"{self.window} (ramp {self.ramp}, stride {self.window - self.ramp})"
            ),
        }

    def chunk(self) -> int:
        """Windows per forward pass (:func:`windows_per_forward`)."""
        return windows_per_forward(
            self.window, int(self.card.kwargs.get("width", 32)), self.device.type
        )

    def apply(self, batch: PatchBatch) -> np.ndarray:
        """Every patch's windows sampled and blended; ``ms_up`` where no window reaches
        (the patch's outer margin, which the engine drops).

        Only windows that touch a patch's core (``batch.cores``, the pixels the engine
        keeps) are sampled: with the margin equal to the window, a window wholly in the
        margin weighs on no kept pixel, and skipping it leaves the kept pixels as they
        were while saving that window's whole reverse process.

        ``--precision fp16|bf16`` runs the networks under CUDA autocast
        (:func:`models.deep.runtime.autocast`, a no-op on the CPU); the denoisers hand
        the step rule float32, so the sampler's arithmetic stays float32.
        """
        import torch

        from models.deep.runtime import autocast

        win, ramp = self.window, self.ramp
        stride = win - ramp
        w1 = blend_weights(win, ramp)
        w2 = np.outer(w1, w1).astype(np.float32)
        n, b, ph, pw = batch.ms.shape
        jobs: list[tuple[int, int, int, int, int]] = []  # (patch, r, c, abs row, abs col)
        for k, (r0, c0) in enumerate(batch.origins):
            lo_r, hi_r, lo_c, hi_c = batch.cores[k] if batch.cores else (0, ph, 0, pw)
            for ar in window_starts(int(r0), ph, win, stride):
                r = ar - int(r0)
                if r >= hi_r or r + win <= lo_r:
                    continue
                for ac in window_starts(int(c0), pw, win, stride):
                    c = ac - int(c0)
                    if c < hi_c and c + win > lo_c:
                        jobs.append((k, r, c, ar, ac))
        acc = np.zeros((n, b, ph, pw), np.float32)
        wsum = np.zeros((n, 1, ph, pw), np.float32)
        step = self.chunk()
        for i in range(0, len(jobs), step):
            part = jobs[i : i + step]
            ms = np.stack([batch.ms[k, :, r : r + win, c : c + win] for k, r, c, _, _ in part])
            pan = np.stack([batch.pan[k, :, r : r + win, c : c + win] for k, r, c, _, _ in part])
            origins = [(ar, ac) for _, _, _, ar, ac in part]
            with torch.inference_mode(), autocast(self.device, self.settings.precision):
                fused = self.model.generate(
                    torch.from_numpy(ms).to(self.device),
                    torch.from_numpy(pan).to(self.device),
                    self.scheduler,
                    self.noise_for(origins, win),
                )
            resid = fused.float().cpu().numpy() - ms
            for (k, r, c, _, _), d in zip(part, resid, strict=True):
                acc[k, :, r : r + win, c : c + win] += w2 * d
                wsum[k, :, r : r + win, c : c + win] += w2
        out = batch.ms.copy()
        has = wsum > 0
        out += np.where(has, acc / np.where(has, wsum, 1.0), 0.0)
        return out

    def forward(self, ms_up: Any, pan: Any, lr: Any = None, origins: Any = None) -> Any:
        """The whole sampler on normalised windows at absolute ``origins``, with
        gradients (adaptation trains through every step): the windows' own output,
        unblended, from the noise ``apply`` draws at the same pixels."""
        if origins is None:
            raise ValueError(f"{self.name}: forward needs the windows' absolute origins")
        side = int(ms_up.shape[-1])
        if int(ms_up.shape[-2]) != side:
            raise ValueError(f"{self.name}: forward takes square windows, got {ms_up.shape}")
        noise = self.noise_for([(int(r), int(c)) for r, c in origins], side)
        return self.model.generate(ms_up, pan, self.scheduler, noise)

    def adapt_side(self, ratio: int) -> int | None:
        """Adaptation trains on the sampler's own windows where they hold whole MS
        pixels (``window`` a multiple of the ratio), so the adapted network is trained
        on what it is run on."""
        return self.window if self.window % int(ratio) == 0 else None

    def noise_for(self, origins: list[tuple[int, int]], win: int) -> Callable[..., Any]:
        """``noise(step, channels, spatial)`` for windows at absolute ``origins``."""
        import torch

        from models.iterative.noise import positional_noise

        seed = int(self.settings.seed)

        def noise(step: int, channels: int, spatial: bool = True) -> Any:
            draws = []
            for r, c in origins:
                rows = np.arange(r, r + win) if spatial else np.array([r])
                cols = np.arange(c, c + win) if spatial else np.array([c])
                z = positional_noise(seed, rows, cols, int(step), int(channels))
                draws.append(z if spatial else z.reshape(channels))
            return torch.stack(draws).to(self.device)

        return noise


def scheduler_for(kw: dict[str, Any], steps: int, eta: float = 0.0) -> tuple[Any, str]:
    """The DDIM scheduler over ``steps`` of the diffusion a network was trained for
    (its config ``kw``: ``T``, ``schedule``, ``prediction``, ``clip_sample``,
    ``start_alpha_bar``), and its one-line name."""
    from models.iterative.ddim import DDIMScheduler
    from models.iterative.schedules import make_schedule

    schedule = make_schedule(str(kw.get("schedule", "cosine")), int(kw.get("T", 1000)))
    prediction = str(kw.get("prediction", "epsilon"))
    clip = kw.get("clip_sample")
    clip = float(clip) if clip else None
    start = kw.get("start_alpha_bar")
    start = float(start) if start else None
    sched = DDIMScheduler(
        schedule, int(steps), eta=eta, prediction=prediction, clip_sample=clip,
        start_alpha_bar=start,
    )  # fmt: skip
    name = f"ddim {schedule.kind} T={schedule.T} eta={eta:g} {prediction}"
    if sched.start != schedule.T - 1:
        name += f" from t={sched.start}"
    return sched, name + (f" clip {clip:g}" if clip else "")


def windowed(info: ModelInfo, deep: DeepModel) -> WindowedDiffusion:
    """``deep`` (a loaded network) as a windowed diffusion model with the run's
    ``--steps``; without it the weights' ``default_steps`` (their card's, chosen from
    that file's quality-against-steps curve, :mod:`models.deep.staged`), else the
    registry's."""
    own = getattr(deep.model, "default_steps", None)  # StagedDiffusionNet.default_steps
    steps = deep.settings.steps or own or int(info.extra["default_steps"])
    check_steps(steps, int(deep.card.kwargs.get("T", 1000)))
    # the network's config: the card's kwargs plus the defaults of settings newer than it
    sched, desc = scheduler_for(dict(deep.model.config), steps)
    base = {f.name: getattr(deep, f.name) for f in dataclasses.fields(DeepModel)}
    return WindowedDiffusion(**base, scheduler=sched, describe=desc)


def check_steps(steps: int, T: int) -> None:
    """``--steps`` must lie in 1..T, the number of steps the weights were trained for."""
    if not 1 <= steps <= T:
        from errors import OptionError

        raise OptionError(f"--steps {steps}: give 1 to {T} (the T the weights were trained for)")


#: The run settings of a windowed diffusion model: a single-pass network's
#: (``--adapt`` included: adaptation trains through the sampler, :meth:`WindowedDiffusion.
#: forward`) plus the sampler's.
WINDOWED_RUN_OPTIONS = (
    "weights", "device", "batch_size", "precision", "tile", "overlap", "seed", "steps",
    "adapt", "adapt_steps", "adapt_time", "save_adapted",
)  # fmt: skip


def check_windowed(entry: Entry, scene: Any, context: PrepareContext) -> None:
    """Weights that fit (:func:`models.deep.method.fitting_weights`), are a final stage
    (a stage-I prior cannot fuse), a ``--steps`` within their ``T``, and patch settings
    that can be planned around the card's window (the spec's halo)."""
    from models.deep.weights import read_card
    from tiling import patches

    s = context.settings
    if s.adapt:  # the starting point (None: a network built on the scene, zero-shot)
        from models.deep.adapt import check_mode
        from models.deep.adapt_prepare import starting_point

        check_mode(s.adapt)
        path, _ = starting_point(scene, entry.info.name, context.sensor, s.weights)
    else:
        path = fitting_weights(scene, entry.info.name, context.sensor, s.weights)
    kw = read_card(path).kwargs if path is not None else {}
    if s.tile is not None or s.overlap is not None:
        halo = int(kw.get("window", entry.info.halo(scene.ratio)))
        patches.plan_patches(*scene.out_shape, halo, s.tile, s.overlap)
    stage, final = int(kw.get("stage", 1)), int(entry.info.extra.get("stages", 1))
    if path is not None and stage != final:
        raise WeightsError(
            f"{path.name} holds stage-{stage} weights of -m {entry.info.name} (a prior "
            f"that needs the reference image); fuse with stage-{final} weights: "
            f"pansharp train -m {entry.info.name} --stage {final} --init {path.name}"
        )
    if s.steps is not None:
        check_steps(s.steps, int(kw.get("T", 1000)))


def prepare_windowed(entry: Entry, scene: Any, context: PrepareContext) -> WindowedDiffusion:
    """The network loaded (:func:`prepare_network`), wrapped by :func:`windowed`
    (``extra["prepared_as"]``)."""
    prepared = prepare_network(entry, scene, context)
    if not isinstance(prepared, WindowedDiffusion):  # pragma: no cover - registry wiring
        raise TypeError(f"{entry.info.name}: prepared_as is not set")
    return prepared


def register_windowed(info: ModelInfo, factory: Callable[..., Any]) -> ModelInfo:
    """Register a windowed diffusion model (family ``diffusion``); ``info.extra`` must
    give ``default_steps``; the record takes weights, trains (``stages`` of them) and
    runs with :data:`WINDOWED_RUN_OPTIONS`."""
    record = dataclasses.replace(
        info,
        family="diffusion",
        needs_weights=True,
        trainable=True,
        torch=True,
        run_options=WINDOWED_RUN_OPTIONS,
        extra={**info.extra, "prepared_as": windowed, "objective": "diffusion"},
    )
    register_model(record, check=check_windowed, prepare=prepare_windowed)(factory)
    return record
