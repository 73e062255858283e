"""The single-pass networks in the method protocol (:mod:`models.protocol`).

``check``: the weights file (``--weights FILE``, else the registry's default for model
and sensor) and its card against the scene's bands, ratio and sensor, from the
safetensors header alone, so weights that do not fit are refused before torch is
imported (~3 s, ~280 MB). ``prepare``: torch, the device and the tensors; a scene bit
depth other than the weights' is only warned about (the data may still be in the same
range). ``apply``: one forward pass over a batch of normalised patches.

Memory per pixel (``--batch-size auto``, the CPU patch cap) is estimated from the
network's own layers (:func:`patch_bytes`), so a new network needs no table entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from errors import WeightsError
from models.protocol import BLENDED, MethodSpec, PatchBatch, PrepareContext, RunSettings
from models.registry import Entry
from tiling import patches


@dataclass
class DeepModel:
    """A network with its weights loaded, on its device, and the card it came with."""

    name: str
    model: Any  # torch.nn.Module (torch is imported lazily)
    card: Any  # models.deep.card.WeightsCard
    path: Path
    device: Any  # torch.device
    halo: int
    settings: RunSettings = field(default_factory=RunSettings)
    global_context: bool = False  # pooled statistics: tiles differ slightly, blend wider
    warnings: list[str] = field(default_factory=list)  # for the run's summary and JSON
    report: dict[str, Any] = field(default_factory=dict)  # the prepare phase's (--adapt)

    @property
    def scale(self) -> float:
        """The weights' normalisation: DN / (2^bit_depth - 1), or the card's own scale."""
        return card_scale(self.card)

    @property
    def spec(self) -> MethodSpec:
        n = int(self.card.kwargs.get("n_bands", 1)) if self.card is not None else 1
        half = self.device.type == "cuda" and self.settings.precision != "fp32"
        return MethodSpec(
            halo=self.halo,
            tiling=BLENDED,
            scale=self.scale,
            bytes_per_pixel=patch_bytes(self.model, n, (1, 1), 2 if half else 4),
            map_bytes_per_pixel=4 * largest_map(self.model, n),
            global_context=self.global_context,
            needs_lowres=bool(getattr(self.model, "needs_lowres", False)),
            ratio_aligned=bool(getattr(self.model, "ratio_aligned", False)),
            lattice=int(getattr(self.model, "lattice", 1)),
        )

    def tags(self) -> dict[str, str]:
        """Output metadata: which weights made the image."""
        tags = {
            "PANSHARP_WEIGHTS": self.path.name,
            "PANSHARP_WEIGHTS_SENSOR": str(self.card.sensor),
            "PANSHARP_WEIGHTS_STEPS": str(self.card.steps),
        }
        if self.report.get("mode"):
            r = self.report
            tags["PANSHARP_ADAPT"] = f"{r['mode']} from {r['start']}, {r['steps']} steps"
        return tags

    def apply(self, batch: PatchBatch) -> np.ndarray:
        """The network on normalised inputs; normalised output (N, B, P, P) float32.

        Only the forward pass runs here (the executor's critical path): inputs were
        normalised by the reader, the output is rescaled by the writer while blending.
        On the CPU, inputs and output are shared with torch without copies.
        """
        import torch

        from models.deep.runtime import autocast

        with torch.inference_mode(), autocast(self.device, self.settings.precision):
            x = torch.from_numpy(batch.ms).to(self.device)
            y = torch.from_numpy(batch.pan).to(self.device)
            if batch.lr is not None and getattr(self.model, "needs_lowres", False):
                lr = torch.from_numpy(batch.lr).to(self.device)
                return self.model(x, y, lr).float().cpu().numpy()
            return self.model(x, y).float().cpu().numpy()

    def forward(self, ms_up: Any, pan: Any, lr: Any = None, origins: Any = None) -> Any:
        """The method's fusion of normalised torch windows, with gradients (test-time
        adaptation trains through it, :mod:`models.deep.adapt`): the network's forward
        pass (``lr``, the MS samples, where it takes them). ``origins`` (absolute PAN
        row, col of each window) are for methods that draw noise by position."""
        if lr is not None and getattr(self.model, "needs_lowres", False):
            return self.model(ms_up, pan, lr)
        return self.model(ms_up, pan)

    def adapt_side(self, ratio: int) -> int | None:
        """The side of the windows adaptation trains on (None: adaptation's own)."""
        return None


def fitting_weights(scene: Any, name: str, sensor_name: str, weights: str | None) -> Path:
    """The weights file for model ``name`` on ``scene`` (``weights`` or the shipped
    default), its card checked against the scene's bands, ratio and sensor from the
    safetensors header alone, without torch; raises naming every mismatch."""
    from models.deep.weights import check_card, read_card, resolve_weights
    from models.registry import get_entry

    adaptable = "adapt" in get_entry(name).info.run_options  # else no --adapt to offer
    if weights is None:
        refuse_starting_point(scene, name, sensor_name, adaptable)
    path = resolve_weights(weights, name, sensor_name, adaptable)
    check_card(read_card(path), path, name, scene.n_bands, scene.ratio, sensor_name)
    return Path(path)


def card_scale(card: Any) -> float:
    """The weights' normalisation: DN / (2^bit_depth - 1), or the card's own scale."""
    from models.deep.runtime import scale_for

    return scale_for(card.bit_depth) if card.bit_depth is not None else float(card.scale or 1)


#: The sensor preset of the Landsat-derived ratio-4 weights (physics.sensors).
STARTING_POINT = "landsat-r4"


def refuse_starting_point(scene: Any, name: str, sensor_name: str, adaptable: bool = True) -> None:
    """A 4-band ratio-4 scene of a sensor without weights of its own (GeoEye-1, IKONOS,
    WorldView, QuickBird...): the Landsat-derived ratio-4 weights exist but were not
    trained on it, and used as they are would give a plausible but wrong image; the
    refusal names ``--adapt``, which tailors them to the scene (where the model takes it:
    ``adaptable``; else only weights trained on the sensor)."""
    from models.deep.card import default_weights_path
    from physics.sensors import get_sensor

    sensor = get_sensor(sensor_name).name
    own = default_weights_path(name, sensor)
    start = default_weights_path(name, STARTING_POINT)
    if own.is_file() or not start.is_file() or sensor == STARTING_POINT:
        return
    if scene.n_bands != 4 or scene.ratio != 4:
        return
    fix = (
        "tailor it to the scene with --adapt (by default at most half the time of the "
        "fusion itself; --adapt-time S bounds it), or "
        if adaptable
        else ""
    )
    raise WeightsError(
        f"-m {name} has no weights trained on {sensor_name!r}; {start.name} (Landsat-derived, "
        f"4 bands, ratio 4) is only a starting point for this sensor: {fix}pass --weights "
        f"FILE with {sensor_name} weights (pansharp train -m {name} --sensor {sensor_name})"
    )


def check_network(entry: Entry, scene: Any, context: PrepareContext) -> None:
    """Weights that fit, and patch settings that can be planned, before any output."""
    s = context.settings
    if s.adapt:
        from models.deep.adapt import check_mode
        from models.deep.adapt_prepare import starting_point

        check_mode(s.adapt)
        starting_point(scene, entry.info.name, context.sensor, s.weights)
    else:
        fitting_weights(scene, entry.info.name, context.sensor, s.weights)
    if s.tile is not None or s.overlap is not None:
        patches.plan_patches(*scene.out_shape, entry.info.halo(scene.ratio), s.tile, s.overlap)


def prepare_network(entry: Entry, scene: Any, context: PrepareContext) -> DeepModel:
    """Load the weights on the device (:func:`check_network` has vetted them)."""
    from models.deep.runtime import check_precision, select_device
    from models.deep.weights import load_weights

    s = context.settings
    info = entry.info
    check_precision(s.precision)
    if s.adapt:
        from models.deep.adapt_prepare import prepare_adapted

        device = select_device(s.device)
        model, card, path, report = prepare_adapted(entry, scene, context, device)
        net = network_model(info, model, card, path, device, scene.ratio, s)
        net.report = report
        return net
    path = fitting_weights(scene, info.name, context.sensor, s.weights)
    device = select_device(s.device)
    model, card = load_weights(
        path, info.name, scene.n_bands, scene.ratio, context.sensor, device=device
    )
    model.eval()  # no dropout or batch statistics at inference, whoever built it
    warnings = []
    bit_depth = context.bit_depth
    if card.bit_depth and bit_depth and card.bit_depth != bit_depth:
        warnings.append(
            f"weights {path.name} were trained on {card.bit_depth}-bit data, the scene is "
            f"{bit_depth}-bit; pass --bit-depth if that is wrong"
        )
    bins = int(getattr(model, "equalisation_bins", 0) or 0)
    if bins > 0:
        ms_hist, pan_hist = scene_histograms(context, scene.n_bands, bins, card)
        model.set_equalisation(ms_hist, pan_hist)
    return network_model(info, model, card, path, device, scene.ratio, s, warnings)


def value_histograms(
    ms: np.ndarray, pan: np.ndarray, valid: np.ndarray | None, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of normalised values clipped to [0, 1] in ``bins`` equal bins: (B, bins)
    for ``ms`` (B, H, W) and (bins,) for ``pan`` (H, W), over ``valid`` pixels only.

    Sums of these over tiles or training windows are the scene-wide statistics a
    network's equalisation uses (``equalisation_bins``); counts add exactly, so the
    total does not depend on how the scene was cut.
    """
    keep = np.ones(pan.shape, bool) if valid is None else np.asarray(valid, bool)
    return np.stack([bin_counts(b[keep], bins) for b in ms]), bin_counts(pan[keep], bins)


def bin_counts(values: np.ndarray, bins: int) -> np.ndarray:
    """Counts (bins,) int64 of the finite ``values`` clipped to [0, 1] in ``bins`` equal
    bins, the last one closed: the one binning of every equalisation statistic."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    idx = np.minimum((np.clip(v, 0.0, 1.0) * bins).astype(np.int64), bins - 1)
    return np.bincount(idx, minlength=bins).astype(np.int64)


def scene_histograms(
    context: PrepareContext, n_bands: int, bins: int, card: Any
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`value_histograms` of the whole scene (each tile's core, valid pixels), one
    streaming pass over the scene's grid tiles (``context.scan``), before any patch."""
    if context.scan is None:
        raise RuntimeError("equalisation statistics need a scan of the scene")
    scale = card_scale(card)

    def work(tile: Any) -> dict[str, Any]:
        ms_h, pan_h = value_histograms(tile.ms / scale, tile.pan / scale, tile.core_valid(), bins)
        return {"ms_hist": ms_h, "pan_hist": pan_h}

    totals = context.scan.sum(0, work)
    empty_ms, empty_pan = np.zeros((n_bands, bins), np.int64), np.zeros(bins, np.int64)
    return totals.get("ms_hist", empty_ms), totals.get("pan_hist", empty_pan)


def network_model(
    info: Any,
    model: Any,
    card: Any,
    path: Path | str,
    device: Any,
    ratio: int,
    settings: RunSettings,
    warnings: list[str] | None = None,
) -> DeepModel:
    """A prepared network around ``model`` (loaded from weights, or being trained): the
    network's own halo (the registry's if it has none), global context where the
    registry says so and the card does not switch LAGNet's global bias off. A record
    whose ``extra["prepared_as"]`` is set (diffusion models: the sampler around the
    denoiser, :mod:`models.iterative.windowed`) gets that wrapper, so ``fuse``,
    ``evaluate`` and training's validation all run the same prepared method."""
    halo = int(getattr(model, "halo", info.halo(ratio)))
    glob = bool(info.extra.get("global_context")) and card.kwargs.get("global_bias") is not False
    deep = DeepModel(
        info.name, model, card, Path(path), device, halo, settings, glob, list(warnings or [])
    )
    wrap = info.extra.get("prepared_as")  # e.g. a diffusion sampler around the network
    return wrap(info, deep) if wrap is not None else deep


# -- memory -----------------------------------------------------------------------------
def map_widths(model: Any, n_bands: int) -> tuple[int, int]:
    """(widest convolution output, or the band count; largest ``transient_channels`` a
    module declares): the channel counts that set a forward pass's memory per pixel."""
    from torch import nn

    modules = list(model.modules())
    widest = max([m.out_channels for m in modules if isinstance(m, nn.Conv2d)] + [n_bands])
    transient = max([int(getattr(m, "transient_channels", 0)) for m in modules] + [0])
    return widest, transient


def largest_map(model: Any, n_bands: int) -> int:
    """Channels of the largest single activation (LAGConv's transient: its tap maps,
    allocated as two halves)."""
    conv, transient = map_widths(model, n_bands)
    return max(conv, transient // 2)


def patch_bytes(model: Any, n_bands: int, shape: tuple[int, int], bytes_per_value: int) -> int:
    """Rough peak memory of one patch in a forward pass (inference: no stored activations).

    Six maps of the widest convolution (input, output, residual, ReLU and the allocator's
    slack) plus the inputs and output, plus the largest transient a module declares
    (``transient_channels``: LAGConv's k^2 x C_out tap responses, OTPNet's Runge-Kutta
    stages, PreMix's predicted kernels). Measured peaks per pixel of every network stay
    below it (tests/test_deep_memory.py).
    """
    widest, transient = map_widths(model, n_bands)
    px = shape[0] * shape[1]
    return int((6 * widest + transient + 3 * n_bands + 1) * px * bytes_per_value)


def auto_batch(
    model: Any, device: Any, n_bands: int, shape: tuple[int, int], precision: str
) -> int:
    """``--batch-size auto`` for ``model``: :func:`tiling.patches.batch_for_memory` with
    its :func:`patch_bytes` per pixel."""
    half = device.type == "cuda" and precision != "fp32"
    per_px = patch_bytes(model, n_bands, (1, 1), 2 if half else 4)
    return patches.batch_for_memory(per_px, device, shape)


def cpu_patch_cap(model: Any, n_bands: int, overlap: int) -> int | None:
    """:func:`tiling.patches.cpu_patch_cap` for ``model``'s largest activation."""
    return patches.cpu_patch_cap(4 * largest_map(model, n_bands), overlap)
