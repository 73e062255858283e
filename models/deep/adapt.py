"""Test-time adaptation: a deep model tailored to the scene it fuses, in bounded time.

Three modes (``--adapt``), all trained on the scene's own patches with the reference-free
losses of :mod:`models.deep.adapt_losses`, once, in the prepare phase, so every patch of
the fusion uses the same adapted network and no seam can appear:

- ``tailor`` (default): Feature Tailors at the network's split points
  (:mod:`models.deep.tailor`), trained with the network frozen (the Feature Tailor and
  CAT abstracts, ``../shared/papers/002_*.txt``): few parameters, fast, safe.
- ``swift``: the gradients of the loss on the selected patches rank every weight of the
  network; only the :data:`SWIFT_FRACTION` most sensitive are updated (SWIFT, same file,
  second abstract), the others are kept by masking their gradients.
- ``full``: every weight fine-tuned (Z-PNN's adaptation from pretrained weights, Ciotola
  et al. 2022), at a smaller learning rate.

Patches (:func:`read_patches`): ``4 n`` candidate windows on the MS sample lattice,
drawn at random over the valid part of the scene and read one at a time through the
tile reader (never the scene whole); each is described by its band means, PAN contrast
and PAN gradient energy, the candidates are clustered (k-means, ``n`` clusters) and the
most textured window of each cluster is kept: a small, diverse and informative set, as
lambda-PNN picks its salient patches by k-means.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from errors import OptionError

MODES = ("tailor", "swift", "full")
LEARNING_RATE = {"tailor": 1e-3, "swift": 1e-4, "full": 5e-5}
SWIFT_FRACTION = 0.05  # of the network's weights updated by swift
PATCHES = 16  # windows adapted on (lambda-PNN: 16 salient patches)
PATCH = 96  # their side in PAN pixels (rounded up to the ratio)
CANDIDATES_PER_PATCH = 4
KMEANS_ITERATIONS = 20

Progress = Callable[[dict[str, Any]], None]
#: (ms_up, pan, lr or None, window origins) -> fused, with gradients
Forward = Callable[[Any, Any, Any, Any], Any]


@dataclass
class ScenePatches:
    """Normalised windows of the scene: ``ms_up`` (N, B, P, P) and ``pan`` (N, 1, P, P)
    on the PAN grid, ``ms`` (N, B, h, w) the MS samples inside each window and their
    window-local ``rows``/``cols`` (the same for every window: all start on the lattice),
    ``origins`` (row, col) in the output grid."""

    ms_up: np.ndarray
    pan: np.ndarray
    ms: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    origins: list[tuple[int, int]]


def check_mode(mode: str) -> str:
    key = str(mode).strip().lower()
    if key not in MODES:
        raise OptionError(f"--adapt {mode!r}: use one of {', '.join(MODES)}")
    return key


def read_patches(
    scene: Any,
    ctx: Any,
    scale: float,
    n: int = PATCHES,
    patch: int = PATCH,
    seed: int = 0,
) -> ScenePatches:
    """The ``n`` windows adaptation trains on (module docstring)."""
    from tiling.blended import sample_phase
    from tiling.reader import TileReader
    from tiling.windows import TileSpec

    r = int(scene.ratio)
    h, w = scene.out_shape
    ph = sample_phase(scene)  # windows start on the MS sample lattice and stay inside
    side = min(-(-patch // r) * r, (min(h - ph[0], w - ph[1]) // r) * r)
    if side < 4 * r:
        raise OptionError(f"the scene ({h}x{w}) is too small to adapt on; fuse without --adapt")
    rng = np.random.default_rng([seed, 0x41444150])  # "ADAP"
    rows_free = max(0, (h - side - ph[0]) // r)
    cols_free = max(0, (w - side - ph[1]) // r)
    want = max(1, n) * CANDIDATES_PER_PATCH
    reader = TileReader(scene, ctx, resampling="exp", dtype=np.float32)
    cands: list[tuple[tuple[int, int], Any]] = []
    try:
        for k in range(want * 3):
            if len(cands) >= want:
                break
            y = ph[0] + r * int(rng.integers(0, rows_free + 1))
            x = ph[1] + r * int(rng.integers(0, cols_free + 1))
            t = reader.read(TileSpec(k, y, x, side, side, 0))
            if not t.valid.all():
                continue  # adaptation windows hold no nodata
            cands.append(((y, x), t))
    finally:
        reader.close()
    if not cands:
        raise OptionError("no window of the scene is free of nodata to adapt on")
    rows, cols = cands[0][1].sample_rows, cands[0][1].sample_cols
    cands = [c for c in cands if np.array_equal(c[1].sample_rows, rows)
             and np.array_equal(c[1].sample_cols, cols)]  # fmt: skip
    keep = _salient(np.stack([_describe(t) for _, t in cands]), min(n, len(cands)), rng)
    chosen = [cands[i] for i in keep]
    inv = np.float32(1.0 / scale)

    def norm(a: np.ndarray) -> np.ndarray:
        return np.nan_to_num(a.astype(np.float32) * inv)

    return ScenePatches(
        ms_up=np.stack([norm(t.ms) for _, t in chosen]),
        pan=np.stack([norm(t.pan)[None] for _, t in chosen]),
        ms=np.stack([norm(t.samples(t.ms)) for _, t in chosen]),
        rows=np.asarray(rows),
        cols=np.asarray(cols),
        origins=[o for o, _ in chosen],
    )


def _describe(t: Any) -> np.ndarray:
    """Band means, PAN contrast and PAN gradient energy of a window (relative units)."""
    pan = t.pan.astype(np.float64)
    top = max(float(np.abs(pan).max()), 1e-12)
    gy, gx = np.gradient(pan / top)
    means = t.ms.reshape(t.ms.shape[0], -1).mean(1) / top
    return np.concatenate([means, [pan.std() / top, float(np.mean(np.hypot(gx, gy)))]])


def _salient(features: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
    """k-means of the standardised features into ``n`` clusters (k-means++ start); the
    member of each with the largest gradient energy (the last feature)."""
    x = (features - features.mean(0)) / (features.std(0) + 1e-12)
    centres = [x[int(rng.integers(len(x)))]]
    for _ in range(1, n):
        d = np.min([((x - c) ** 2).sum(1) for c in centres], axis=0)
        p = d / d.sum() if d.sum() > 0 else None
        centres.append(x[int(rng.choice(len(x), p=p))])
    c = np.stack(centres)
    for _ in range(KMEANS_ITERATIONS):
        label = np.argmin(((x[:, None] - c[None]) ** 2).sum(2), axis=1)
        c = np.stack([x[label == k].mean(0) if (label == k).any() else c[k] for k in range(n)])
    label = np.argmin(((x[:, None] - c[None]) ** 2).sum(2), axis=1)
    out = []
    for k in range(n):
        members = np.flatnonzero(label == k)
        if members.size:
            out.append(int(members[np.argmax(features[members, -1])]))
    return sorted(out)


def default_steps(mode: str) -> int:
    """Steps when neither ``--adapt-steps`` nor ``--adapt-time`` bound the adaptation:
    Z-PNN adapts pretrained weights in 100 iterations; a tailor learns in fewer."""
    return {"tailor": 60, "swift": 80, "full": 100}[mode]


def adapt_network(
    model: Any,
    patches: ScenePatches,
    mode: str,
    *,
    gains: list[float],
    ratio: int,
    beta: float,
    steps: int | None = None,
    time_limit: float | None = None,
    device: Any = None,
    progress: Progress | None = None,
    seed: int = 0,
    forward: Forward | None = None,
) -> dict[str, Any]:
    """Adapt ``model`` in place on ``patches`` (module docstring); its report.

    ``forward(ms_up, pan, lr, origins)`` is the fusion the losses score, with gradients
    (the prepared method's :meth:`~models.deep.method.DeepModel.forward`: a diffusion
    model's whole sampler); default the network's own forward pass. The network stays
    in evaluation mode throughout: the adapted network must be the one inference runs
    (KSDiff's latent standardisation would otherwise use the adaptation windows' batch
    statistics and move its running averages; no network here has dropout)."""
    import torch

    from models.deep.adapt_losses import adaptation_loss
    from models.deep.tailor import attach_tailors

    mode = check_mode(mode)
    if steps is not None and steps < 1:
        raise OptionError(f"--adapt-steps {steps}: give 1 or more steps")
    if time_limit is not None and time_limit <= 0:
        raise OptionError(f"--adapt-time {time_limit}: give a positive number of seconds")
    total = steps if steps is not None else (None if time_limit else default_steps(mode))
    dev = device or next(model.parameters()).device
    torch.manual_seed(seed)
    ms_up = torch.from_numpy(patches.ms_up).to(dev)
    pan = torch.from_numpy(patches.pan).to(dev)
    ms = torch.from_numpy(patches.ms).to(dev)
    lowres = bool(getattr(model, "needs_lowres", False))
    lr_in = ms if lowres else None
    origins = list(patches.origins)
    if forward is None:

        def forward(x: Any, p: Any, lr: Any, _origins: Any) -> Any:
            return model(x, p, lr) if lr is not None else model(x, p)

    for p in model.parameters():
        p.requires_grad_(mode != "tailor")
    if mode == "tailor":
        params = list(attach_tailors(model).parameters())
    else:
        params = [p for p in model.parameters()]

    def loss_now() -> tuple[Any, dict[str, float]]:
        out = forward(ms_up, pan, lr_in, origins)
        return adaptation_loss(out, pan, ms_up, ms, gains, ratio, patches.rows, patches.cols, beta)

    model.eval()
    masks = _swift_masks(model, loss_now) if mode == "swift" else None
    opt = torch.optim.Adam(params, lr=LEARNING_RATE[mode])
    t0 = time.monotonic()
    first: dict[str, float] | None = None
    last: dict[str, float] = {}
    step = 0
    step_s = forward_s = 0.0  # mean seconds of one step and of its forward pass
    while True:
        if total is not None and step >= total:
            break
        if (
            time_limit is not None
            and step
            and _would_overrun(time.monotonic() - t0, step_s, forward_s, time_limit)
        ):
            break
        t_step = time.monotonic()
        loss, parts = loss_now()
        t_forward = time.monotonic() - t_step
        if not math.isfinite(float(loss.detach())):
            raise OptionError(
                f"--adapt {mode}: the loss diverged at step {step}; use --adapt tailor"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if masks is not None:
            for p, m in masks:
                if p.grad is not None:
                    p.grad.mul_(m)
        opt.step()
        step += 1
        step_s += (time.monotonic() - t_step - step_s) / step
        forward_s += (t_forward - forward_s) / step
        last = {"loss": float(loss.detach()), **parts}
        if first is None:
            first = dict(last)
        if progress is not None:
            progress({"step": step, "steps_total": total, **last})
    with torch.no_grad():
        final, parts = loss_now()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    updated = (
        sum(int(m.sum()) for _, m in masks) if masks is not None else sum(p.numel() for p in params)
    )
    return {
        "mode": mode,
        "steps": step,
        "seconds": round(time.monotonic() - t0, 3),
        "patches": int(ms_up.shape[0]),
        "patch": int(ms_up.shape[-1]),
        "parameters_updated": int(updated),
        "learning_rate": LEARNING_RATE[mode],
        "beta": beta,
        "loss_start": first,
        "loss_end": {"loss": float(final), **parts},
    }


def _would_overrun(elapsed: float, step_s: float, forward_s: float, limit: float) -> bool:
    """True when one more step (its mean time so far) and the final loss pass (one
    forward) would end past ``limit``: the budget bounds the whole adaptation, not only
    the moment the last step starts (which let it run a step and a pass over)."""
    return elapsed + step_s + forward_s > limit


def _swift_masks(model: Any, loss_now: Callable[[], Any]) -> list[tuple[Any, Any]]:
    """(parameter, 0/1 mask) of the SWIFT_FRACTION weights with the largest |gradient|
    of the adaptation loss on the selected patches (one probe)."""
    import torch

    model.zero_grad(set_to_none=True)
    loss, _ = loss_now()
    loss.backward()
    grads = [(p, p.grad.detach().abs()) for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.flatten() for _, g in grads])
    k = max(1, int(SWIFT_FRACTION * flat.numel()))
    cut = torch.topk(flat, k).values.min()
    model.zero_grad(set_to_none=True)
    return [(p, (g >= cut).to(p.dtype)) for p, g in grads]
