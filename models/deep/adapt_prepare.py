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
of the scene on this device, ``BUDGET_SHARE`` of the estimated compute time of the
fusion (one batch of the run's own patch plan timed, times the number of batches,
:func:`_fusion_seconds`) less the time already spent reading the windows; at least one
step.
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

# of the estimated fusion time: 0.4, not 0.5, leaves room for the windows' reading and
# the estimate itself, which come before the budget is known; the budget then bounds the
# steps and the final loss pass (adapt._would_overrun)
BUDGET_SHARE = 0.4
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
    from models.deep.adapt import PATCH, adapt_network, check_mode, read_patches
    from models.deep.adapt_losses import structural_weight
    from models.deep.card import WeightsCard
    from models.deep.method import card_scale, network_model, scene_histograms
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
        # and the settings a network normally takes from its training data (the
        # registry's ``zero_shot_kwargs``: NODiff's residual gain)
        kwargs = {**physics_kwargs(entry, sensor, scene.ratio, n),
                  **info.extra.get("zero_shot_kwargs", {})}  # fmt: skip
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
    # the prepared method around the network: its forward is what adaptation trains
    # through (a diffusion model's sampler), its apply what the budget times
    method = network_model(info, model, card, path or Path("-"), device, scene.ratio, s)
    t0 = time.monotonic()
    side = method.adapt_side(scene.ratio) or PATCH
    patches = read_patches(scene, context.fuse, card_scale(card), patch=side, seed=s.seed)
    steps, limit, budget = s.adapt_steps, s.adapt_time, "given"
    if steps is None and limit is None:
        fusion = _fusion_seconds(method, patches, scene, device, s)
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
        progress=progress, seed=s.seed, forward=method.forward,
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


def _fusion_seconds(method: Any, patches: Any, scene: Any, device: Any, settings: Any) -> float:
    """The estimated compute time of fusing the scene: one batch of the run's own patch
    plan (:func:`tiling.blended.patch_plan`: the patch side and batch the fuse will use,
    the adaptation windows tiled to fill it) through the prepared method's ``apply``
    (a network's forward pass, a diffusion model's sampler over its grid windows),
    timed on the second of two passes, times the number of batches.

    Why the run's plan: on the CPU the fuse caps its patches under glibc's mmap ceiling
    (FusionNet: 496 pixels), where freed maps are reused; a forward pass timed at 512
    pixels paid fresh pages on every pass and made the estimate 1.6 x the real fusion
    time (adaptation 0.69 x inference instead of at most half). The first pass pays the
    first allocation of the maps (0.99 s against 0.29 s for FusionNet at 512^2), and
    the small adaptation windows cost more per pixel than fusion's patches (an estimate
    of 104 s against 19 s for a 4000^2 fuse run), so neither is timed.
    """
    import numpy as np

    from models.protocol import PatchBatch
    from tiling.blended import patch_plan

    plan, batch = patch_plan(scene, method.spec, settings, device)
    ph, pw = plan.shape

    def tiled(a: np.ndarray) -> np.ndarray:
        reps = (batch, 1, -(-ph // a.shape[-2]), -(-pw // a.shape[-1]))
        return np.ascontiguousarray(np.tile(a[:1], reps)[..., :ph, :pw])

    r = int(scene.ratio)
    ms_up, pan = tiled(patches.ms_up), tiled(patches.pan)
    lowres = np.ascontiguousarray(ms_up[..., ::r, ::r])  # the shape the reader gives
    origins = [(0, k * pw) for k in range(batch)]
    ones = [np.ones((ph, pw), bool)] * batch
    work = PatchBatch(list(origins), origins, ms_up, pan, ones, lowres)
    for _ in range(2):  # the first pass pays the maps' first allocation: 3.4 x slower
        t0 = time.perf_counter()
        method.apply(work)
        took = time.perf_counter() - t0
    return took * -(-plan.count // batch)
