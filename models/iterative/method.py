"""Diffusion models in the method protocol (:mod:`models.protocol`).

A diffusion model here is a conditional denoiser network
``denoiser(x_t, t, ms_up, pan) -> epsilon`` (or ``x0``, per the scheduler's
``prediction``), a :class:`models.iterative.ddim.DDIMScheduler` and a step count. It is
run on blended patches like the single-pass networks, and reuses their phases: the
weights are a safetensors file with a card (:mod:`models.deep.weights`), checked from the
header before torch is imported (:func:`models.deep.method.check_network`) and loaded
on the device (:func:`models.deep.method.prepare_network`).

What the denoiser generates: the detail residual ``x0 = F - ms_up`` of the fused image
``F`` over the interpolated MS, both normalised by the card's scale; ``apply`` returns
``ms_up + x0_hat``. Why the residual: like detail-injection networks (DiCNN) it leaves
the MS spectra to the skip connection, and it is a small, near zero-mean signal, which
is what a Gaussian diffusion prior starting from ``x_T ~ N(0, I)`` models best (PanDiff,
Meng et al., IEEE TGRS 2023, generates the same difference image).

Why the halo is ``steps x`` the denoiser's: one sampler step applies the denoiser once,
so ``x_{t'}(p)`` depends on ``x_t`` and on the conditioning within the denoiser's
half-width ``h`` of ``p``; after ``k`` steps ``x0_hat(p)`` depends on ``x_T`` and on the
conditioning within ``k h``. A conditioning encoded once per patch (features of
``ms_up, pan`` reused by every step, half-width ``c``) adds ``c`` once:
``halo = steps * h + c``. With that margin no kept pixel sees a patch border (the convs'
zero padding), and because ``x_T`` and every step's noise are drawn by absolute pixel
(:func:`models.iterative.noise.positional_noise`), overlapping patches compute the same
values: any tile size gives the whole-image result up to float rounding.

Nothing here imports torch at module level: registering a diffusion model
(:func:`register_diffusion`) happens when the registry loads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.deep import DEEP_RUN_OPTIONS
from models.deep.method import DeepModel, check_network, prepare_network
from models.protocol import MethodSpec, PatchBatch, PrepareContext
from models.registry import Entry, ModelInfo, register_model

#: The run settings a diffusion model uses: a network's, plus the noise's seed.
DIFFUSION_RUN_OPTIONS = (*DEEP_RUN_OPTIONS, "seed")

#: Per-pixel maps the sampler keeps besides the denoiser's own, B channels each, fp32:
#: x_t, the network output, x0_hat and the step's noise (``--batch-size auto``).
SAMPLER_MAPS = 4


@dataclass(frozen=True)
class SamplerConfig:
    """How a diffusion model samples: DDIM (Song et al. 2021) over ``steps`` of the
    ``T``-step ``schedule`` (:func:`models.iterative.schedules.make_schedule`).

    ``schedule``, ``T`` and ``prediction`` are fixed by how the denoiser was trained;
    ``steps`` and ``eta`` (0: deterministic DDIM given ``x_T``; 1: DDPM-like ancestral
    noise, eq. 16) are the sampler's choice. The values are validated by
    :class:`models.iterative.ddim.DDIMScheduler` when a run prepares the model; only
    ``steps`` is checked here, because the registered halo is built from it.
    """

    steps: int
    schedule: str = "linear"
    T: int = 1000
    eta: float = 0.0
    prediction: str = "epsilon"

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"SamplerConfig: steps must be an integer >= 1, got {self.steps!r}")

    def scheduler(self) -> Any:
        """The :class:`models.iterative.ddim.DDIMScheduler` (imports torch)."""
        from models.iterative.ddim import DDIMScheduler
        from models.iterative.schedules import make_schedule

        schedule = make_schedule(self.schedule, self.T)
        return DDIMScheduler(schedule, self.steps, eta=self.eta, prediction=self.prediction)

    def describe(self) -> str:
        """One line for the output's tags: ``ddim linear T=1000 eta=0 epsilon``."""
        return f"ddim {self.schedule} T={self.T} eta={self.eta:g} {self.prediction}"


def patch_noise(
    seed: int,
    origins: list[tuple[int, int]],
    shape: tuple[int, int],
    step: int,
    bands: int,
    device: Any = "cpu",
) -> Any:
    """Positional noise (N, bands, P, Q) for patches whose first pixel is at the absolute
    PAN ``origins``: patch ``k`` gets the rows ``origins[k][0] + arange(P)`` and columns
    ``origins[k][1] + arange(Q)`` of one scene-wide noise field (seed, step)."""
    import torch

    from models.iterative.noise import positional_noise

    ph, pw = shape
    return torch.stack(
        [
            positional_noise(
                int(seed),
                np.arange(r, r + ph),
                np.arange(c, c + pw),
                int(step),
                bands,
                device=device,
            )
            for r, c in origins
        ]
    )


@dataclass
class DiffusionModel(DeepModel):
    """A denoiser with its weights on its device, its scheduler, ready for patches.

    ``halo`` (inherited) is the denoiser's per-step half-width ``h``; ``condition_halo``
    the once-per-patch conditioning's ``c``; the spec's halo is ``steps * h + c`` (see
    the module docstring). ``scheduler`` is a
    :class:`models.iterative.ddim.DDIMScheduler`, ``sampler`` the config it came from.
    """

    scheduler: Any = None
    sampler: SamplerConfig | None = None
    condition_halo: int = 0

    @property
    def steps(self) -> int:
        return int(self.scheduler.steps)

    @property
    def spec(self) -> MethodSpec:
        """The network's spec (:class:`DeepModel`), with the sampler's halo, its state in
        the memory per pixel, and ``stochastic``."""
        net = super().spec
        n = int(self.card.kwargs.get("n_bands", 1)) if self.card is not None else 1
        return dataclasses.replace(
            net,
            halo=self.steps * int(self.halo) + int(self.condition_halo),
            bytes_per_pixel=net.bytes_per_pixel + SAMPLER_MAPS * n * 4,
            stochastic=True,
        )

    def tags(self) -> dict[str, str]:
        """Output metadata: the weights, the sampler's steps, the seed, the scheduler."""
        desc = self.sampler.describe() if self.sampler is not None else "ddim"
        return {
            **super().tags(),
            "PANSHARP_SAMPLER_STEPS": str(self.steps),
            "PANSHARP_SEED": str(int(self.settings.seed)),
            "PANSHARP_SCHEDULER": desc,
        }

    def noise(self, batch: PatchBatch, step: int) -> Any:
        """The noise of ``step`` for every patch of ``batch``, keyed by absolute pixel,
        band, step and the run's ``--seed`` (on the device)."""
        n, b, ph, pw = batch.ms.shape
        return patch_noise(self.settings.seed, batch.origins, (ph, pw), step, b, self.device)

    def initial_noise(self, batch: PatchBatch) -> Any:
        """``x_T``: positional noise at step ``T`` (the scheduler's key convention: no
        sampler step uses ``T``, so ``x_T`` shares no key with a step's noise)."""
        return self.noise(batch, self.scheduler.schedule.T)

    def apply(self, batch: PatchBatch) -> np.ndarray:
        """Sample the residual from ``x_T`` through every DDIM step (eq. 12), conditioned
        on the batch's normalised ``ms_up`` and ``pan``; returns ``ms_up + x0_hat``
        (N, B, P, P) float32, normalised. The denoiser gets ``t`` as an int64 (N,)
        tensor; under ``--precision`` fp16/bf16 (CUDA) only the denoiser runs in half
        precision, the sampler's arithmetic stays float32."""
        import torch

        from models.deep.runtime import autocast

        n = len(batch)
        with torch.inference_mode():
            ms = torch.from_numpy(batch.ms).to(self.device)
            pan = torch.from_numpy(batch.pan).to(self.device)

            def denoise(x_t: Any, t: int, cond: Any) -> Any:
                steps = torch.full((n,), int(t), dtype=torch.int64, device=self.device)
                with autocast(self.device, self.settings.precision):
                    return self.model(x_t, steps, ms, pan).float()

            x0 = self.scheduler.sample(
                denoise, self.initial_noise(batch), noise_fn=lambda t: self.noise(batch, t)
            )
            return (ms + x0).cpu().numpy()


def prepare_diffusion(entry: Entry, scene: Any, context: PrepareContext) -> DiffusionModel:
    """Phase 2: the denoiser loaded as a network is (:func:`prepare_network`), plus its
    scheduler (phase 1 is :func:`check_network`'s: the card against the scene, patch
    settings against the registered halo, which is already the whole sampler's). The
    per-step halo is the denoiser's own ``halo`` if it has one, else the registered
    ``denoiser_halo``."""
    info = entry.info
    sampler: SamplerConfig = info.extra["sampler"]
    scheduler = sampler.scheduler()  # a bad config is refused before the weights load
    deep = prepare_network(entry, scene, context)
    step_halo = getattr(deep.model, "halo", None)
    if step_halo is None:
        step_halo = info.extra["denoiser_halo"](scene.ratio)
    cond = int(getattr(deep.model, "condition_halo", info.extra.get("condition_halo", 0)))
    base = {f.name: getattr(deep, f.name) for f in dataclasses.fields(DeepModel)}
    base["halo"] = int(step_halo)
    return DiffusionModel(**base, scheduler=scheduler, sampler=sampler, condition_halo=cond)


def register_diffusion(
    info: ModelInfo,
    factory: Callable[..., Any],
    sampler: SamplerConfig,
    *,
    condition_halo: int = 0,
) -> ModelInfo:
    """Register a diffusion model; returns the record as registered.

    ``info.halo`` is the denoiser's per-step half-width (a function of the ratio);
    the registered record's ``halo`` is the whole sampler's,
    ``sampler.steps * info.halo(ratio) + condition_halo``, so ``pansharp models`` and the
    patch checks see the receptive field that tiling must respect. ``factory(n_bands,
    **card kwargs)`` builds the denoiser (imports torch only when called). The record
    takes weights, the network run options plus ``--seed``, and runs on torch.
    """
    step_halo = info.halo

    def halo(ratio: int) -> int:
        return sampler.steps * int(step_halo(ratio)) + int(condition_halo)

    record = dataclasses.replace(
        info,
        halo=halo,
        needs_weights=True,
        run_options=DIFFUSION_RUN_OPTIONS,
        torch=True,
        extra={
            **info.extra,
            "sampler": sampler,
            "denoiser_halo": step_halo,
            "condition_halo": int(condition_halo),
        },
    )
    register_model(record, check=check_network, prepare=prepare_diffusion)(factory)
    return record
