"""What the two-stage diffusion networks (NODiff, KSDiff) share: stages, the sampler's
window, the diffusion their weights were trained for, and the stage-1 warm start.

Both papers train a prior first (stage 1: conditioned on the reference, so it cannot
fuse) and then, with that prior frozen, what fuses from PAN and MS alone (stage 2). A
network of either stage is one class with a ``stage`` argument, so a stage-1 file's
tensors load by name into a stage-2 network (:meth:`StagedDiffusionNet.warm_start`),
and the card's kwargs rebuild exactly the network that was trained. Both sample on
windows fixed to the scene's grid (:mod:`models.iterative.windowed`): ``window`` and
``window_ramp`` are part of the weights' configuration, and the halo is the window.

``default_steps`` is the sampler's step count when ``--steps`` is not given (None: the
registry's ``default_steps``). Why in the weights: the quality-against-steps curve is a
property of the trained denoiser, not of the architecture. NODiff's Landsat 8 file
improves with every step, while its Landsat 7 file is best at one step and loses with
each added one (``models/deep/weights/README.md``). Like ``window_ramp`` it is a sampler
setting that training never reads; ``models/deep/weights/set_sampler.py`` writes it
into a card, chosen from the file's measured curve.
"""

from __future__ import annotations

from typing import Any

import torch

from models.deep.common import PansharpNet

STAGES = (1, 2)
#: constructor arguments that only the sampler reads (training never does): a shipped
#: file's card may be rewritten with new values without retraining
#: (:func:`models.deep.weights.with_sampler_settings`)
SAMPLER_SETTINGS = ("window_ramp", "default_steps")


class StagedDiffusionNet(PansharpNet):
    """Base class of a two-stage diffusion network (module docstring).

    Subclasses set ``name`` and ``prediction`` (the target their loss is defined on:
    ``"epsilon"`` or ``"x0"``) and give :meth:`is_prior`.
    """

    prediction: str = ""

    def __init__(
        self,
        n_bands: int,
        *,
        stage: int,
        window: int,
        window_ramp: int,
        T: int,
        schedule: str,
        prediction: str,
        default_steps: int | None = None,
        **config: Any,
    ) -> None:
        if prediction != self.prediction:
            raise ValueError(
                f"{self.name} predicts {self.prediction}, got prediction={prediction!r}"
            )
        if int(stage) not in STAGES:
            raise ValueError(f"{self.name}: stage must be 1 or 2, got {stage}")
        if not 0 < int(window_ramp) <= int(window) // 2:
            raise ValueError(
                f"{self.name}: window_ramp must be in 1..window / 2, got {window_ramp} "
                f"for window {window}"
            )
        if default_steps is not None and not 1 <= int(default_steps) <= int(T):
            raise ValueError(
                f"{self.name}: default_steps must be in 1..T = {T}, got {default_steps}"
            )
        super().__init__(
            n_bands,
            **config,
            default_steps=None if default_steps is None else int(default_steps),
            stage=int(stage),
            window=int(window),
            window_ramp=int(window_ramp),
            T=int(T),
            schedule=str(schedule),
            prediction=self.prediction,
        )
        self.stage = int(stage)

    @property
    def fuses(self) -> bool:
        """Stage 1 needs the reference: only stage-2 weights fuse (training validates them)."""
        return self.stage == 2

    @property
    def window(self) -> int:
        """Side of the sampler's windows in PAN pixels."""
        return int(self.config["window"])

    @property
    def window_ramp(self) -> int:
        """Width of the blend ramps at a window's borders."""
        return int(self.config["window_ramp"])

    @property
    def default_steps(self) -> int | None:
        """The sampler's steps without ``--steps`` that these weights ask for (None:
        the registry's)."""
        steps = self.config.get("default_steps")
        return None if steps is None else int(steps)

    @property
    def halo(self) -> int:
        """The windowed sampler's reach: a pixel depends on the windows that hold it."""
        return self.window

    @staticmethod
    def is_prior(name: str) -> bool:
        """True for the stage-1 tensors that stage 2 keeps frozen."""
        raise NotImplementedError

    def warm_start(self, tensors: dict[str, torch.Tensor]) -> list[str]:
        """Load stage-1 tensors into a stage-2 network: every tensor of the file must be
        one of this network's with the same shape; the stage-2 additions keep their
        initialisation. Returns the names that were not in the file."""
        own = self.state_dict()
        bad = [k for k, v in tensors.items() if k not in own or own[k].shape != v.shape]
        if bad:
            raise ValueError(f"tensors that do not fit {self.name}: {', '.join(sorted(bad)[:5])}")
        self.load_state_dict(tensors, strict=False)
        return sorted(set(own) - set(tensors))
