"""``--adapt`` in a deep model's prepare phase: starting point, adaptation, saved card.

Starting point (:func:`starting_point`), reported in the summary, the JSON and the tags:

1. ``given``: ``--weights FILE`` (model, bands and ratio checked; any sensor);
2. ``own``: the shipped weights of the scene's sensor, where they exist;
3. ``nearest``: shipped weights of the same band count and ratio trained on another
   sensor, the Landsat-derived ratio-4 set (``landsat-r4``) first: the starting point
   for VHR 4-band products;
4. ``zero-shot``: for any other band count (8-band WorldView-2/3), the network built
   from scratch and trained on the scene itself at full resolution (mode ``full``).

The network is normalised by the *scene's* bit depth (the adapted card says so), then
adapted once on the scene's windows (:mod:`models.deep.adapt`). Default budget, when
neither ``--adapt-steps`` nor ``--adapt-time`` is given: at most half the fusion time
of the scene on this device, ``BUDGET_SHARE * t_px * H * W * OVERLAP_FACTOR`` less the
time already spent reading the windows, with ``t_px`` the measured time per pixel of a
forward pass at fusion's patch size (:func:`_fusion_seconds`; at least one step).
``--save-adapted FILE`` writes the adapted network with a card (source weights,
scene, losses, steps, time) that ``--weights`` accepts later.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from errors import OptionError
from models.deep.method import STARTING_POINT

#: blended patches overlap: the fusion runs the network over this many times the pixels
OVERLAP_FACTOR = 1.15
# of the estimated fusion time: 0.4, not 0.5, leaves room for what follows the budget
# (the final loss pass, the last step's overrun): at 0.5 FusionNet's adaptation of a
# 4000^2 scene took 12.0 s for a 9.5 s budget, 0.64 x the 18.8 s fuse run
BUDGET_SHARE = 0.4
FUSE_PATCH = 512  # the side the budget's forward pass is timed at (tiling.patches)
MIN_BUDGET_S = 1e-3  # a budget already spent still runs one step


def starting_point(
    scene: Any, name: str, sensor: str, weights: str | None
) -> tuple[Path | None, str]:
    """(weights file or None, kind) for ``--adapt`` (module docstring)."""
    from models.deep.card import WEIGHTS_DIR, default_weights_path
    from models.deep.weights import check_card, read_card
    from physics.sensors import get_sensor

    n, ratio = scene.n_bands, scene.ratio
    if weights is not None:
        check_card(read_card(weights), weights, name, n, ratio, None)
        return Path(weights), "given"
    own = default_weights_path(name, get_sensor(sensor).name)
    cands = [(own, "own"), (default_weights_path(name, STARTING_POINT), "nearest")]
    cands += [(p, "nearest") for p in sorted(WEIGHTS_DIR.glob(f"{name}_*.safetensors"))]
    for path, kind in cands:
        if path.is_file():
            card = read_card(path)
            if card.n_bands == n and card.ratio == ratio and card.model == name:
                return path, kind
    return None, "zero-shot"


def prepare_adapted(
    entry: Any, scene: Any, context: Any, device: Any
) -> tuple[Any, Any, Path, dict]:
    """(adapted model, its card, the source path (or the saved file), report)."""
    from models.deep.adapt import adapt_network, check_mode, read_patches
    from models.deep.adapt_losses import structural_weight
    from models.deep.card import WeightsCard
    from models.deep.method import card_scale, scene_histograms
    from models.deep.train_setup import physics_kwargs
    from models.deep.weights import load_weights, save_weights
    from models.registry import create_model
    from physics.sensors import get_sensor

    s = context.settings
    mode = check_mode(s.adapt)
    info = entry.info
    sensor = get_sensor(context.sensor)
    path, kind = starting_point(scene, info.name, sensor.name, s.weights)
    n = scene.n_bands
    if path is not None:
        model, card = load_weights(path, info.name, n, scene.ratio, None, device=device)
    else:
        mode = "full"  # nothing to tailor in a network that never learned
        kwargs = physics_kwargs(entry, sensor, scene.ratio, n)
        model = create_model(info.name, n_bands=n, **kwargs).to(device)
        card = WeightsCard(
            model=info.name, kwargs=dict(model.config), sensor=sensor.name,
            band_names=[f"b{i + 1}" for i in range(n)], ratio=scene.ratio,
            bit_depth=context.bit_depth, scale=1.0,
        )  # fmt: skip
    if context.bit_depth:  # the scene's own normalisation, whatever the source was trained on
        card = dataclasses.replace(card, bit_depth=context.bit_depth)
    bins = int(getattr(model, "equalisation_bins", 0) or 0)
    if bins > 0:
        model.set_equalisation(*scene_histograms(context, n, bins, card))
    t0 = time.monotonic()
    patches = read_patches(scene, context.fuse, card_scale(card), seed=s.seed)
    steps, limit, budget = s.adapt_steps, s.adapt_time, "given"
    if steps is None and limit is None:
        fusion = _fusion_seconds(model, patches, scene, device)
        spent = time.monotonic() - t0  # reading the windows, timing the estimate
        limit = max(MIN_BUDGET_S, BUDGET_SHARE * fusion - spent)
        budget = "half the fusion"
    report_progress = getattr(context.scan, "progress", None)

    def progress(info_: dict[str, Any]) -> None:
        if report_progress is not None:
            total = info_["steps_total"] or max(info_["step"], 1)
            report_progress(f"adapt:loss {info_['loss']:.4g}", info_["step"], total)

    report = adapt_network(
        model, patches, mode, gains=list(sensor.gains(n)), ratio=scene.ratio,
        beta=structural_weight(sensor.name), steps=steps, time_limit=limit, device=device,
        progress=progress, seed=s.seed,
    )  # fmt: skip
    report.update(
        start=kind,
        source_weights=path.name if path is not None else None,
        budget=budget,
        time_limit_s=None if limit is None else round(limit, 3),
        total_seconds=round(time.monotonic() - t0, 3),
    )
    training = {**card.training, "adapted": report, "tailors": mode == "tailor",
                "init_from": path.name if path is not None else None}  # fmt: skip
    card = dataclasses.replace(
        card, sensor=sensor.name, training=training, validation={}, steps=card.steps
    )
    out = path if path is not None else Path(f"{info.name}-zero-shot")
    if s.save_adapted:
        if not str(s.save_adapted).endswith(".safetensors"):
            raise OptionError(f"--save-adapted {s.save_adapted}: end it in .safetensors")
        out = save_weights(s.save_adapted, model, card)
        report["saved"] = str(out)
    return model, card, out, report


def _fusion_seconds(model: Any, patches: Any, scene: Any, device: Any) -> float:
    """The estimated compute time of fusing the scene, ``t_px * H * W * OVERLAP_FACTOR``;
    the budget is ``BUDGET_SHARE`` of it less what adaptation has already spent
    (reading its windows, this estimate).

    ``t_px`` is timed on one patch of the size fusion runs (``FUSE_PATCH``, or the
    scene's side if smaller; the adaptation windows tiled to fill it), on the second of
    two passes: the first pays the first allocation of its maps (0.99 s against 0.29 s
    for FusionNet at 512^2 here), and small windows cost more per pixel than fusion's
    large patches (measured at 4000^2 with FusionNet: an estimate of 104 s
    from the windows against 19 s for the whole fuse run), which let adaptation take
    2.9 x the inference time instead of at most half of it.
    """
    import numpy as np
    import torch

    def tiled(a: np.ndarray, side: int) -> np.ndarray:
        reps = (1, 1, -(-side // a.shape[-2]), -(-side // a.shape[-1]))
        return np.ascontiguousarray(np.tile(a[:1], reps)[..., :side, :side])

    h, w = scene.out_shape
    side = max(8, min(FUSE_PATCH, h, w))
    lowres = getattr(model, "needs_lowres", False)
    x = torch.from_numpy(tiled(patches.ms_up, side)).to(device)
    p = torch.from_numpy(tiled(patches.pan, side)).to(device)
    with torch.inference_mode():
        for _ in range(2):  # the first pass pays the maps' first allocation: 3.4 x slower
            t0 = time.perf_counter()
            model(x, p, x[..., :: scene.ratio, :: scene.ratio]) if lowres else model(x, p)
            took = time.perf_counter() - t0
    return took / float(side * side) * h * w * OVERLAP_FACTOR
