"""Training the deep models by Wald's protocol, with checkpoints and resume; no printing.

:func:`train` is one loop for every objective and every kind of input: a seeded
random-window sampler (:mod:`models.deep.sampler`) draws each step's patches from the
training area - from (PAN, MS) arrays degraded whole (:mod:`models.deep.data`), or from
pairs read and degraded one window at a time (:mod:`models.deep.readers`), so a huge
scene trains in memory set by the batch - and the objective
(:mod:`models.deep.objectives`, default ``wald-l1``: the L1 loss of most recent
pansharpening networks, less sensitive than L2 to the rare large residuals of clouds
and saturated pixels) scores the network's output; AdamW, a linear warm-up then a
cosine learning-rate decay, all seeded. Progress goes to a ``progress(dict)`` callback
so the CLI decides what to show. Validation scores what ``pansharp fuse`` would write:
the held-out areas, written once as small degraded scenes, are fused through the one
executor with the network being trained (:mod:`models.deep.validation`).

Checkpoints (every ``checkpoint_every`` steps and at the end) are two safetensors files
next to the output, never pickles: ``<out>.ckpt.safetensors`` is a normal weights file
with its card (loadable with :func:`load_weights`), ``<out>.ckpt.optim.safetensors``
holds the AdamW moments and, in its header, the step, the sampler's RNG state and the
parameter groups, so a resumed run continues exactly where the checkpoint left off.

The inference helpers (:func:`predict`, :func:`select_device`,
:func:`run_with_oom_fallback`) live in :mod:`models.deep.runtime` and are re-exported.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from errors import OptionError, WeightsError
from models.deep.card import WeightsCard, read_card
from models.deep.objectives import DEFAULT_OBJECTIVE, WALD, Objective, TrainBatch, get_objective
from models.deep.readers import ArrayPair, PairReader
from models.deep.runtime import (
    autocast,
    check_precision,
    predict,
    run_with_oom_fallback,
    scale_for,
    select_device,
)
from models.deep.sampler import WindowSampler, area_positions, open_sources, split_windows
from models.deep.train_setup import initial_model, physics_kwargs, training_histograms
from models.deep.validation import MAX_VAL_REGIONS, VAL_SIDE, Validation, choose_crops, held_out
from models.deep.weights import (
    check_card,
    check_tensors,
    load_state,
    save_tensors,
    save_weights,
)
from models.registry import create_model, get_entry, model_names
from physics.sensors import Sensor, get_sensor

__all__ = [
    "Pair",
    "TrainResult",
    "checkpoint_paths",
    "predict",
    "run_with_oom_fallback",
    "select_device",
    "train",
    "trainable_models",
]

Progress = Callable[[dict[str, Any]], None]
#: A training pair: (PAN (H, W), MS (B, h, w)) arrays, or a reader streaming windows.
Pair = tuple[np.ndarray, np.ndarray] | PairReader

DEFAULT_BATCH = 16
DEFAULT_LR = 5e-4
DEFAULT_WEIGHT_DECAY = 1e-4
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_CHECKPOINT_EVERY = 500
MIN_LR_FRACTION = 0.01  # cosine decays to 1 % of the peak learning rate


@dataclass
class TrainResult:
    """What :func:`train` wrote: final weights, their card, the latest checkpoint."""

    weights: Path
    card: WeightsCard
    checkpoint: Path
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)


def checkpoint_paths(out_path: Path | str) -> tuple[Path, Path]:
    """(weights checkpoint, optimizer checkpoint) written beside ``out_path``."""
    p = Path(out_path)
    stem = p.name[: -len(".safetensors")] if p.name.endswith(".safetensors") else p.name
    return p.with_name(f"{stem}.ckpt.safetensors"), p.with_name(f"{stem}.ckpt.optim.safetensors")


def _resume_paths(resume: Path | str) -> tuple[Path, Path]:
    p = Path(resume)
    if p.name.endswith(".ckpt.safetensors"):
        w, o = p, p.with_name(p.name[: -len(".ckpt.safetensors")] + ".ckpt.optim.safetensors")
    else:
        w, o = checkpoint_paths(p)
    if not w.is_file() or not o.is_file():
        raise WeightsError(
            f"cannot resume from {resume}: need both {w.name} and {o.name} in {w.parent}; "
            f"--resume takes the .ckpt.safetensors file written while training"
        )
    return w, o


def _bit_depth(bit_depth: int | None, sensor: Sensor, pairs: Sequence[Pair]) -> int | None:
    """Explicit value, else the sensor preset's, else the integer dtype's width."""
    if bit_depth is not None:
        return int(bit_depth)
    if sensor.bit_depth is not None:
        return sensor.bit_depth
    first = pairs[0]
    dt = np.asarray(first[1]).dtype if isinstance(first, tuple) else first.ms_dtype
    if np.issubdtype(dt, np.integer):
        return dt.itemsize * 8
    raise OptionError(
        f"sensor {sensor.name!r} has no bit depth and the MS is {dt}: pass --bit-depth "
        f"(inputs are divided by 2^bit_depth - 1) or a sensor preset with --sensor"
    )


def _lr_at(
    step: int, base: float, total: int | None, run_elapsed: float, time_limit: float | None
) -> float:
    """Linear warm-up, then cosine decay over the run (by steps, or by time if only that)."""
    fracs = []
    if total:
        fracs.append(step / total)
    if time_limit:
        fracs.append(run_elapsed / time_limit)
    frac = min(1.0, max(fracs)) if fracs else 0.0
    warmup = max(1, min(200, (total or 2000) // 20))
    warm = min(1.0, (step + 1) / warmup)
    cosine = MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * frac))
    return base * warm * cosine


def _save_checkpoint(
    paths: tuple[Path, Path],
    model: nn.Module,
    opt: torch.optim.Optimizer,
    card: WeightsCard,
    trainer: dict[str, Any],
) -> None:
    """Weights+card, then optimizer moments + trainer state (JSON in the header)."""
    save_weights(paths[0], model, card)
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for key, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{pid}.{key}"] = v.reshape(-1) if v.ndim == 0 else v
                if v.ndim == 0:
                    scalars[f"{pid}.{key}"] = "0-dim"
            else:
                scalars[f"{pid}.{key}"] = v
    meta = {
        "trainer": json.dumps({**trainer, "param_groups": sd["param_groups"], "scalars": scalars})
    }
    save_tensors(paths[1], tensors, meta)


def _load_optimizer(path: Path, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore AdamW's state from the optimizer checkpoint; returns the trainer state."""
    tensors, meta = load_state(path)
    try:
        trainer = json.loads(meta["trainer"])
        scalars = trainer.pop("scalars")
        state: dict[int, dict[str, Any]] = {}
        for name, v in tensors.items():
            _, pid, key = name.split(".", 2)
            zero_dim = scalars.get(f"{pid}.{key}") == "0-dim"
            state.setdefault(int(pid), {})[key] = v.reshape(()) if zero_dim else v
        for name, v in scalars.items():
            if v != "0-dim":
                pid, key = name.split(".", 1)
                state.setdefault(int(pid), {})[key] = v
        opt.load_state_dict({"state": state, "param_groups": trainer.pop("param_groups")})
    except (KeyError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: unusable optimizer checkpoint ({exc})") from exc
    return trainer


def trainable_models() -> list[str]:
    """Names ``pansharp train`` can fit (registry capability ``trainable``)."""
    return [n for n in model_names() if get_entry(n).info.trainable]


def train(
    model_name: str,
    pairs: Sequence[Pair],
    sensor: str | Sensor,
    ratio: int,
    out_path: Path | str,
    steps: int | None = None,
    epochs: float | None = None,
    time_limit: float | None = None,
    patch: int = 64,
    batch_size: int = DEFAULT_BATCH,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    resume: Path | str | None = None,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    progress: Progress | None = None,
    *,
    model_kwargs: dict[str, Any] | None = None,
    device: str = "auto",
    precision: str = "fp32",
    bit_depth: int | None = None,
    scene_names: Sequence[str] | None = None,
    band_names: Sequence[str] | None = None,
    nodata: float | None = None,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    progress_every: int = 10,
    val_side: int = VAL_SIDE,
    max_val_regions: int = MAX_VAL_REGIONS,
    objective: str | Objective | None = None,
    init: Path | str | None = None,
) -> TrainResult:
    """Train ``model_name`` on ``pairs`` by Wald's protocol and write weights + card.

    ``pairs``: per scene, (PAN (H, W), MS (B, h, w)) arrays in DN, degraded whole in
    memory, or a :class:`~models.deep.readers.PairReader` (e.g. a
    :class:`~models.deep.readers.FilePair`) whose windows are read and degraded one
    patch at a time (:mod:`models.deep.sampler`), so memory follows the batch, not the
    scene. Both give the same patches for the same windows. Whole scenes are held out
    for validation (``val_fraction``), or a band of rows of a single scene. Stops at
    the first of ``steps``, ``epochs`` (one epoch = as many patches as the training
    area holds patch positions / ``patch``^2; positions touching nodata included, as a
    streamed scene's nodata is only known where it is read) and ``time_limit`` seconds
    (of this call); ``resume`` continues a checkpoint, counting ``steps``/``epochs``
    from the start of the first run. ``objective`` names the loss
    (:mod:`models.deep.objectives`; None: the model's own, ``wald-l1`` unless the
    registry names another, e.g. ``diffusion``). ``init``: a weights file of
    the same model to start from (a warm start: e.g. ratio 4 from Landsat 8 weights;
    its ratio and sensor may differ, its tensors must fit). ``progress`` receives dicts
    with at least ``step``, ``loss`` (mean loss since the last call, normalised units)
    and ``val`` (dict of metrics, or None between validations).

    Validation (at every checkpoint and at the end) fuses the held-out areas through
    the executor ``pansharp fuse`` uses (:mod:`models.deep.validation`): one centred
    crop of at most ``val_side`` x ``val_side`` degraded pixels per held-out area, for
    at most ``max_val_regions`` areas, written degraded at the start into a temporary
    folder beside ``out_path`` that is removed however the call ends.
    """
    t0 = time.monotonic()
    entry = get_entry(model_name)
    if not entry.info.trainable:
        raise OptionError(
            f"-m {model_name} is not a deep model with trainable weights; nothing to train "
            f"(trainable: {', '.join(trainable_models())})"
        )
    model_name = entry.info.name
    goal = get_objective(
        objective if objective is not None else entry.info.extra.get("objective", DEFAULT_OBJECTIVE)
    )
    if goal.data != WALD:
        raise OptionError(
            f"--objective {goal.name} needs {goal.data!r} patches, which the sampler does "
            f"not make yet; use --objective {DEFAULT_OBJECTIVE}"
        )
    if ratio < 2 or ratio & (ratio - 1):
        raise OptionError(f"--ratio must be a power of two >= 2 (23-tap EXP), got {ratio}")
    if steps is None and epochs is None and time_limit is None:
        raise OptionError("give at least one of --steps, --epochs or --time-limit")
    for flag, v in (("--steps", steps), ("--epochs", epochs), ("--time-limit", time_limit)):
        if v is not None and v <= 0:
            raise OptionError(f"{flag} must be > 0, got {v}")
    if val_side < 2 * ratio or max_val_regions < 0:
        raise OptionError(
            f"val_side must be >= 2 x ratio ({2 * ratio}) and max_val_regions >= 0 "
            f"(got {val_side}, {max_val_regions})"
        )
    if patch < 8 or batch_size < 1 or checkpoint_every < 1 or lr <= 0:
        raise OptionError(
            f"need --patch >= 8, --batch-size >= 1, --checkpoint-every >= 1 and --lr > 0 "
            f"(got {patch}, {batch_size}, {checkpoint_every}, {lr})"
        )
    precision = check_precision(precision)
    sensor_obj = sensor if isinstance(sensor, Sensor) else get_sensor(sensor)
    if len(pairs) == 0:
        raise OptionError("no training pairs given")
    depth = _bit_depth(bit_depth, sensor_obj, pairs)
    scale = scale_for(depth)
    dev = select_device(device)

    sources = open_sources(pairs, sensor_obj.gains, ratio, scale, scene_names, nodata)
    n_bands = sources[0].n_bands
    split = split_windows(sources, val_fraction, seed, patch, ratio)
    positions = area_positions(split.train, patch)
    if positions == 0:
        largest = max(sources[i].shape for i, _ in split.train)
        raise OptionError(
            f"--patch {patch} does not fit in any training scene free of nodata (largest "
            f"degraded scene {largest[0]}x{largest[1]}); use a smaller --patch"
        )
    crops = choose_crops(split.val, [s.name for s in sources], ratio, val_side, max_val_regions)
    steps_per_epoch = max(1, math.ceil(positions / patch**2 / batch_size))
    targets = [int(steps)] if steps is not None else []
    if epochs is not None:
        targets.append(max(1, math.ceil(epochs * steps_per_epoch)))
    total = min(targets) if targets else None

    ckpt = checkpoint_paths(out_path)
    rng = np.random.default_rng(seed)
    sampler = WindowSampler(sources, split.train, patch, rng)
    step, elapsed_before, val_history = 0, 0.0, []
    resumed_from: str | None = None
    torch.manual_seed(seed)
    if resume is not None:
        w_path, o_path = _resume_paths(resume)
        card0 = read_card(w_path)
        check_card(card0, w_path, model_name, n_bands, ratio, sensor_obj.name)
        wanted = {"n_bands": n_bands, **(model_kwargs or {})}
        if model_kwargs and any(card0.kwargs.get(k) != v for k, v in wanted.items()):
            raise OptionError(
                f"model options {model_kwargs} differ from the checkpoint's {card0.kwargs}; "
                f"resume without them or start a new run"
            )
        model = create_model(model_name, **card0.kwargs)
        tensors, _ = load_state(w_path)
        check_tensors(tensors, model, w_path, model_name)  # names, shapes, finite values
        model.load_state_dict(tensors)
    else:
        kwargs = {**physics_kwargs(entry, sensor_obj, ratio, n_bands), **(model_kwargs or {})}
        model = initial_model(model_name, n_bands, kwargs, init)
    model.to(dev).train()
    r_lattice = ratio if getattr(model, "ratio_aligned", False) else 1
    sampler.align = (r_lattice, ratio // 2 if r_lattice > 1 else 0)
    wants_lr = bool(getattr(model, "needs_lowres", False))
    scene_counts = None  # per-scene equalisation statistics (equalisation_bins > 0)
    if int(getattr(model, "equalisation_bins", 0) or 0) > 0:
        scene_counts = training_histograms(sources, split.train, patch, seed, model)
        if resume is None:  # pooled: the tables saved with the weights
            model.set_equalisation(scene_counts[0].sum(0), scene_counts[1].sum(0))
    # frozen parts (a second stage's prior) are neither updated nor decayed
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    if resume is not None:
        trainer = _load_optimizer(o_path, opt)
        if trainer.get("step") != card0.steps or trainer.get("n_pairs") != len(pairs):
            raise WeightsError(
                f"cannot resume from {w_path}: its optimizer file is from step "
                f"{trainer.get('step')} with {trainer.get('n_pairs')} scenes (weights: step "
                f"{card0.steps}, now {len(pairs)} scenes); resume with the same scenes"
            )
        step = int(trainer["step"])
        elapsed_before = float(trainer.get("elapsed", 0.0))
        val_history = list(trainer.get("val_history", []))
        rng.bit_generator.state = trainer["rng"]
        resumed_from = str(w_path)
    use_scaler = dev.type == "cuda" and precision == "fp16"
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    if band_names is not None and len(band_names) != n_bands:
        raise OptionError(f"{len(band_names)} band names for {n_bands} MS bands")
    history: list[dict[str, Any]] = []
    names = [s.name for s in sources]
    saved: dict[str, Any] = {"step": -1, "val": None}
    streamed = any(not isinstance(p, tuple) for p in pairs)

    def card_now(validation: dict[str, Any] | None) -> WeightsCard:
        return WeightsCard(
            model=model_name,
            kwargs=dict(model.config),
            sensor=sensor_obj.name,
            band_names=list(band_names) if band_names else _band_names(sensor_obj, n_bands),
            ratio=ratio,
            bit_depth=depth,
            scale=scale,
            training_scenes=split.train_names,
            steps=step,
            training={
                "protocol": "Wald (physics.degrade.wald_pair, interp23 input)",
                "val_scenes": split.val_names,
                "val_rows": split.val_rows,
                "val_crops": [c.describe() for c in crops],
                "val_method": "fuse's executor on the degraded held-out crops (val_crops)",
                "patch": patch,
                "batch_size": batch_size,
                "epochs": round(step / steps_per_epoch, 4),
                "objective": goal.name,
                "loss": goal.card,
                "sampler": "random windows, read per window" if streamed else "random windows",
                "optimizer": f"AdamW(lr={lr}, weight_decay={weight_decay})",
                "schedule": "linear warm-up, cosine decay to 1 %",
                "seed": seed,
                "elapsed_s": round(elapsed_before + time.monotonic() - t0, 2),
                "device": str(dev),
                "precision": precision,
                "nodata": nodata,
                "resumed_from": resumed_from,
                "init_from": None if init is None else Path(init).name,
            },
            validation=validation
            or {
                "note": "no held-out scene: give >= 2 pairs (or one taller than the patch, "
                "its halo and the held-out rows) and val_fraction > 0"
            },
        )

    def emit(info: dict[str, Any]) -> None:
        history.append(info)
        if progress is not None:
            progress(info)

    def checkpoint(validation: dict[str, Any] | None) -> None:
        if validation is not None:
            val_history.append({"step": step, **validation})
        trainer = {
            "step": step,
            "n_pairs": len(pairs),
            "elapsed": elapsed_before + time.monotonic() - t0,
            "rng": rng.bit_generator.state,
            "val_history": val_history,
            "scenes": names,
        }
        _save_checkpoint(ckpt, model, opt, card_now(validation), trainer)
        saved.update(step=step, val=validation)

    readers = [
        ArrayPair(p[0], p[1], s.name) if isinstance(p, tuple) else p
        for p, s in zip(pairs, sources, strict=True)
    ]

    def validate(held: Validation) -> dict[str, Any] | None:
        """The current network through the executor on the held-out crops (a stage that
        cannot fuse on its own, a prior that needs the reference, is not validated)."""
        if not getattr(model, "fuses", True):
            return {"note": "an intermediate stage (a prior): validated by the last stage"}
        return held.evaluate(model_name, model, card_now(None), ckpt[0], dev, precision)

    with held_out(
        readers,
        [s.shape for s in sources],
        crops,
        out_path=out_path,
        sensor=sensor_obj,
        ratio=ratio,
        scale=scale,
        bit_depth=depth,
        nodata=nodata,
    ) as held:
        loss_sum = torch.zeros((), device=dev)
        loss_n = 0
        last_loss: float | None = None
        while True:
            run_elapsed = time.monotonic() - t0
            if (total is not None and step >= total) or (time_limit and run_elapsed >= time_limit):
                break
            ms, pan, tgt = sampler.batch(batch_size)
            if scene_counts is not None:  # each window equalised by its own scene's tables
                model.set_equalisation(*(c[sampler.drawn] for c in scene_counts))
            cur_lr = _lr_at(step, lr, total, run_elapsed, time_limit)
            for group in opt.param_groups:
                group["lr"] = cur_lr
            batch = TrainBatch(
                torch.from_numpy(ms).to(dev),
                torch.from_numpy(pan).to(dev),
                torch.from_numpy(tgt).to(dev),
            )
            with autocast(dev, precision):
                if hasattr(goal, "run"):  # the objective builds the inputs (diffusion)
                    loss = goal.run(model, batch, rng).float()
                else:
                    if wants_lr:  # windows on the lattice: sample (i, j) at (r i, r j)
                        lr_in = batch.ms_up[..., ::ratio, ::ratio]
                        out = model(batch.ms_up, batch.pan, lr_in)
                    else:
                        out = model(batch.ms_up, batch.pan)
                    loss = goal.loss(out.float(), batch)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            step += 1
            loss_sum += loss.detach()
            loss_n += 1
            last = total is not None and step >= total
            at_ckpt = step % checkpoint_every == 0
            if step % progress_every == 0 or last or at_ckpt:
                mean_loss = last_loss = float(loss_sum) / loss_n
                if not math.isfinite(mean_loss):
                    raise OptionError(
                        f"training diverged (loss {mean_loss} at step {step}); lower --lr"
                    )
                metrics = validate(held) if at_ckpt else None
                if at_ckpt:
                    checkpoint(metrics)
                    model.train()
                emit(
                    {
                        "event": "checkpoint" if at_ckpt else "step",
                        "step": step,
                        "steps_total": total,
                        "epoch": step / steps_per_epoch,
                        "loss": mean_loss,
                        "val": metrics,
                        "lr": cur_lr,
                        "elapsed": time.monotonic() - t0,
                        "checkpoint": str(ckpt[0]) if at_ckpt else None,
                    }
                )
                loss_sum.zero_()
                loss_n = 0

        if saved["step"] == step:
            metrics = saved["val"]
        else:
            metrics = validate(held)
            checkpoint(metrics)
    card = card_now(metrics)
    save_weights(out_path, model, card)
    emit(
        {
            "event": "done",
            "step": step,
            "steps_total": total,
            "epoch": step / steps_per_epoch,
            "loss": float(loss_sum) / loss_n if loss_n else last_loss,
            "val": metrics,
            "lr": None,
            "elapsed": time.monotonic() - t0,
            "checkpoint": str(ckpt[0]),
            "weights": str(out_path),
        }
    )
    return TrainResult(Path(out_path), card, ckpt[0], step, history)


def _band_names(sensor: Sensor, n_bands: int) -> list[str]:
    """The preset's band names when it has one per band, else b1..bB."""
    if len(sensor.band_names) == n_bands:
        return list(sensor.band_names)
    return [f"b{i + 1}" for i in range(n_bands)]
