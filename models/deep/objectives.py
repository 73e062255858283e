"""Training objectives: what the loss compares, and what a batch must carry for it.

The loop in :mod:`models.deep.train` is the same for every objective: the sampler
draws a batch of windows (:mod:`models.deep.sampler`), the network maps the batch's
inputs to a prediction, the objective turns (prediction, batch) into a scalar loss,
AdamW steps. An :class:`Objective` says

- ``name``: its ``--objective`` value;
- ``data``: which patches the sampler must produce. ``"wald"``: reduced-resolution
  pairs by Wald's protocol (ms_up = EXP(MS_LR), pan = PAN_LR, target = the original
  MS; :mod:`models.deep.data`), the only kind the sampler makes today;
- ``needs``: the :class:`TrainBatch` fields its loss reads;
- ``loss(prediction, batch)``: the scalar to minimise;
- ``card``: how the weights card names the loss.

Seams left for objectives not written yet (nothing here implements them):

- full-resolution, unsupervised (Ciotola et al., "Pansharpening by convolutional
  neural networks in the full resolution framework", IEEE TGRS 2022): ``data =
  "full"``, patches on the PAN grid with no target (ms_up = EXP(MS), pan = PAN); the
  loss is a spectral term |degrade(prediction) - MS| with the differentiable Wald
  degradation of :mod:`physics.torch_ops` plus a spatial term against the PAN, so
  it needs the batch's raw MS (a ``ms`` entry of ``extra``). The sampler would add a
  ``"full"`` branch reading windows without degrading them.

Diffusion (:class:`DiffusionLoss`, ``diffusion``, the default of the diffusion models):
the network's input is the target noised at a random step, so the objective has a
``run(model, batch, rng) -> loss`` that the loop calls instead of
``loss(model(ms_up, pan), batch)``; the network says what it predicts and how it is
scored (``training_loss``), the schedule is the one in its config.

Lookup is by name (:func:`get_objective`); an unknown name lists the valid ones.
Torch is imported on first use, so listing objectives (the CLI's help) stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from errors import unknown_name

if TYPE_CHECKING:
    import torch

WALD = "wald"  # the sampler's reduced-resolution (Wald) patches


@dataclass(frozen=True)
class TrainBatch:
    """One step's tensors, on the training device (N patches of p x p pixels).

    ``ms_up`` (N, B, p, p) and ``pan`` (N, 1, p, p) are the network's inputs, ``target``
    (N, B, p, p) the reference when the data has one; ``extra`` holds what other
    objectives add (noise, timesteps, the raw MS of full-resolution patches).
    """

    ms_up: torch.Tensor
    pan: torch.Tensor
    target: torch.Tensor | None = None
    extra: Mapping[str, torch.Tensor] = field(default_factory=dict)


class Objective(Protocol):
    """What the training loop asks of an objective (see the module docstring)."""

    name: str
    data: str
    needs: tuple[str, ...]
    card: str

    def loss(self, prediction: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
        """The scalar loss of ``prediction`` (N, B, p, p) for ``batch``."""
        ...


@dataclass(frozen=True)
class WaldL1:
    """Mean absolute error to the original MS at reduced resolution (Wald's protocol).

    L = mean |f(EXP(MS_LR), PAN_LR) - MS| over pixels, bands and patches
    (``torch.nn.functional.l1_loss``): the loss of most recent pansharpening networks,
    less sensitive than L2 to the rare large residuals of clouds and saturated pixels.
    """

    name: str = "wald-l1"
    data: str = WALD
    needs: tuple[str, ...] = ("ms_up", "pan", "target")
    card: str = "L1"

    def loss(self, prediction: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
        import torch.nn.functional as F

        if batch.target is None:
            raise ValueError("wald-l1 needs a batch with a target (Wald patches)")
        return F.l1_loss(prediction, batch.target)


@dataclass(frozen=True)
class DiffusionLoss:
    """A diffusion network's own loss on Wald patches: the target noised at a random
    step of the network's schedule (``T``, ``schedule`` in its config), the network's
    prediction of the noise or of the clean sample scored by L1 (NODiff eq. 8 and 15,
    KSDiff eq. 4 and 10): :meth:`run` calls ``model.training_loss(ms_up, pan, target,
    rng, scheduler)``, whose draws come from the training loop's generator (saved in
    every checkpoint, so a resumed run continues the same sequence).
    """

    name: str = "diffusion"
    data: str = WALD
    needs: tuple[str, ...] = ("ms_up", "pan", "target")
    card: str = "L1 of the diffusion target (the network's prediction)"

    def loss(self, prediction: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
        raise ValueError("the diffusion objective scores through run(model, batch, rng)")

    def run(self, model: Any, batch: TrainBatch, rng: Any) -> torch.Tensor:
        if batch.target is None:
            raise ValueError("the diffusion objective needs Wald patches with a target")
        if not hasattr(model, "training_loss"):
            raise ValueError(
                f"--objective diffusion is for diffusion models; {model.name!r} is not one"
            )
        return model.training_loss(batch.ms_up, batch.pan, batch.target, rng, noising(model))


def noising(model: Any) -> Any:
    """The forward process of ``model``'s diffusion: the scheduler sampling would build
    from its config (:func:`models.iterative.windowed.scheduler_for`), at one step; only
    its ``add_noise`` and schedule are used in training."""
    from models.iterative.windowed import scheduler_for

    return scheduler_for(dict(model.config), 1)[0]


#: name -> factory. ``--objective`` reads this; new objectives register here.
OBJECTIVES: dict[str, Callable[[], Objective]] = {"wald-l1": WaldL1, "diffusion": DiffusionLoss}

DEFAULT_OBJECTIVE = "wald-l1"


def objective_names() -> list[str]:
    """Valid ``--objective`` values, sorted."""
    return sorted(OBJECTIVES)


def get_objective(name: str | Objective) -> Objective:
    """The objective called ``name`` (an Objective passes through); unknown names list
    the valid ones."""
    if not isinstance(name, str):
        return name
    try:
        factory = OBJECTIVES[name.strip().lower()]
    except KeyError:
        raise unknown_name("objective", name, objective_names(), "--objective") from None
    return factory()
