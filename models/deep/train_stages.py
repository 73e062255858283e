"""Training in stages: a prior first, then the network that uses it (NODiff, KSDiff).

Both diffusion papers train twice. NODiff (eq. 8, then 9-15) learns a texture prior
conditioned on the reference, then freezes it and trains the adapter that replaces the
reference by features of the PAN and MS; KSDiff (eq. 4, then 9-10) learns a latent of
the reference with the regressor, then the diffusion that predicts that latent from the
PAN and MS. A model says how many stages it has (registry ``extra["stages"]``) and takes
``stage`` as a constructor argument; the later stage starts from the earlier one's
weights (``warm_start``: its own additions keep their initialisation).

``train_stages(..., stage=None)`` runs every stage: stage 1 to ``<out>.stage1.safetensors``
(kept: it is the prior the second stage's card names), then stage 2 to ``<out>``, each
with the same budget (``steps``, ``epochs``, ``time_limit``) and checkpoints. With
``resume`` the run continues where it stopped: a finished stage-1 file is kept, an
unfinished stage resumes from its checkpoint. ``stage=1`` or ``2`` runs one
(stage 2 needs ``init``, the stage-1 weights, or ``resume``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from errors import OptionError
from models.deep.train import Pair, TrainResult, checkpoint_paths, train
from models.registry import get_entry


def stage_path(out_path: Path | str, stage: int) -> Path:
    """``<out>.stage<N>.safetensors``: where an intermediate stage's weights go."""
    p = Path(out_path)
    stem = p.name[: -len(".safetensors")] if p.name.endswith(".safetensors") else p.name
    return p.with_name(f"{stem}.stage{stage}.safetensors")


def model_stages(model_name: str) -> int:
    """How many stages ``model_name`` trains in (1 for single-pass networks)."""
    return int(get_entry(model_name).info.extra.get("stages", 1))


def train_stages(
    model_name: str,
    pairs: Sequence[Pair],
    sensor: Any,
    ratio: int,
    out_path: Path | str,
    *,
    stage: int | None = None,
    resume: Path | str | None = None,
    init: Path | str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> list[TrainResult]:
    """Train ``model_name``'s stages (module docstring); returns each stage's result.
    ``options`` are :func:`models.deep.train.train`'s keyword arguments."""
    stages = model_stages(model_name)
    kwargs = dict(model_kwargs or {})
    if stage is not None and stage not in range(1, stages + 1):
        raise OptionError(
            f"--stage {stage}: -m {model_name} trains in {stages} stage"
            + ("s (1 or 2)" if stages > 1 else "; leave --stage out")
        )
    if stages == 1:
        return [
            train(model_name, pairs, sensor, ratio, out_path, resume=resume, init=init,
                  model_kwargs=kwargs or None, **options)
        ]  # fmt: skip
    if stage is not None:
        if stage > 1 and init is None and resume is None:
            raise OptionError(
                f"--stage {stage} of -m {model_name} starts from the stage-{stage - 1} "
                f"weights: pass --init FILE (e.g. {stage_path(out_path, stage - 1).name}) "
                "or --resume a checkpoint of this stage"
            )
        return [
            train(model_name, pairs, sensor, ratio, out_path, resume=resume, init=init,
                  model_kwargs={**kwargs, "stage": stage}, **options)
        ]  # fmt: skip
    results: list[TrainResult] = []
    previous: Path | None = None
    for k in range(1, stages + 1):
        dest = Path(out_path) if k == stages else stage_path(out_path, k)
        ckpt = checkpoint_paths(dest)[0]
        if resume is not None and k < stages and dest.is_file():
            previous = dest  # finished in an earlier run
            continue
        again = resume is not None and ckpt.is_file()
        start = init if k == 1 else previous
        results.append(
            train(model_name, pairs, sensor, ratio, dest,
                  resume=ckpt if again else None, init=None if again else start,
                  model_kwargs={**kwargs, "stage": k}, **options)
        )  # fmt: skip
        previous = dest
    return results
