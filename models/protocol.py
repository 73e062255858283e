"""The method protocol: all that ``fuse``, ``evaluate``, ``train`` and batch runs know of a method.

Every registered method goes through three phases, whatever it is inside:

1. ``check(scene, context)``: cheap, from headers only (band count, ratio, a weights
   card), before any output exists and before torch is imported; raises the one-line
   error that names the fix. Returns nothing.
2. ``prepare(scene, context) -> Prepared``: the scene-level work done once: a classical
   method's global fit (a streaming pass over the scene's tiles, :class:`TileScan`), a
   network's weights loaded on its device, later test-time adaptation or scene priors.
3. ``Prepared.apply(batch)``: fuses one batch. What a batch is follows the method's
   :class:`MethodSpec.tiling`: ``"exact"`` methods get one :class:`models.base.Tile`
   (halo included) and return the fused tile in DN; ``"blended"`` methods get a
   :class:`PatchBatch` of equal-sized, normalised patches and return the normalised
   fusion - one forward pass, K unfolded stages or N sampler steps, the caller does
   not know which.

The executor (:mod:`tiling.executor`) reads the spec to plan tiles or patches, the
halo, batch sizes and normalisation; no caller branches on a method's family. The
registry (:mod:`models.registry`) keeps the one list of methods and, per entry, the
``check`` and ``prepare`` of its kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from errors import OptionError

if TYPE_CHECKING:
    from models.base import FuseContext, Tile
    from raster.scene import Scene

EXACT = "exact"  # grid tiles with a halo: every tile's core equals the whole-image result
BLENDED = "blended"  # overlapping equal-sized patches, cosine-blended (tiling.patches)
TILINGS = (EXACT, BLENDED)

#: The run settings a method may take besides the common ones (``RunSettings`` fields);
#: a method refuses any other one given on the command line.
RUN_OPTIONS = (
    "weights", "device", "batch_size", "precision", "tile", "overlap", "seed", "steps",
    "adapt", "adapt_steps", "adapt_time", "save_adapted",
)  # fmt: skip


@dataclass(frozen=True)
class MethodSpec:
    """How a prepared method is tiled and fed (read by the executor only).

    ``halo``: receptive-field half-width in PAN pixels at the scene's ratio (for an
    iterative model, the denoiser's times the number of steps: each step widens the
    dependence by one receptive field). ``scale``: inputs and outputs of ``apply`` on
    blended patches are DN / scale (normalisation), 1 for methods working in DN.
    ``bytes_per_pixel``: working memory of ``apply`` per PAN pixel of one patch, for
    ``--batch-size auto``; ``map_bytes_per_pixel``: the largest single activation per
    pixel (the CPU patch cap keeps it under glibc's mmap ceiling, tiling.patches).
    ``global_context``: pooled statistics, so patches differ slightly and blend wider.
    ``stochastic``: ``apply`` draws noise by position from ``RunSettings.seed``.
    ``ratio_aligned``: patches start on the MS sample lattice (a decimation in the
    model); ``lattice``: patch origins are also a multiple of this many pixels apart
    (a pyramid of nearest-neighbour downscalings, PreMix-H's 4): the engine uses the
    least common multiple of both, so a patch's pyramid samples the scene's.
    """

    halo: int
    tiling: str = EXACT
    needs_lowres: bool = False
    ratio_aligned: bool = False
    lattice: int = 1
    scale: float = 1.0
    bytes_per_pixel: int = 0
    map_bytes_per_pixel: int = 0
    global_context: bool = False
    stochastic: bool = False

    def __post_init__(self) -> None:
        if self.tiling not in TILINGS:
            raise ValueError(f"tiling {self.tiling!r} is not one of {TILINGS}")


@dataclass(frozen=True)
class RunSettings:
    """How one run applies a method (all automatic by default; picklable).

    ``tile``: patch side in PAN pixels for blended methods (None: from the receptive
    field); ``overlap``: pixels neighbouring patches share (None: from the halo);
    ``threads``: torch CPU threads (None: all cores); ``seed``: of the positional noise
    of stochastic methods (models.iterative.noise).
    """

    weights: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    precision: str = "fp32"
    tile: int | None = None
    overlap: int | None = None
    threads: int | None = None
    seed: int = 0
    steps: int | None = None  # sampler steps of diffusion models (None: the registry's)
    # test-time adaptation of deep models (models.deep.adapt): mode (None: none), its
    # budget in steps or seconds, and where to save the adapted weights
    adapt: str | None = None
    adapt_steps: int | None = None
    adapt_time: float | None = None
    save_adapted: str | None = None


def parse_batch_size(text: str | int | None) -> int | None:
    """``--batch-size auto|N`` -> None (auto) or N >= 1."""
    if text is None:
        return None
    if isinstance(text, int):
        value = text
    else:
        key = str(text).strip().lower()
        if key == "auto":
            return None
        try:
            value = int(key)
        except ValueError:
            raise OptionError(f"--batch-size {text!r} must be 'auto' or a whole number") from None
    if value < 1:
        raise OptionError(f"--batch-size must be >= 1 or 'auto', got {value}")
    return value


@dataclass
class PatchBatch:
    """Patches read and stacked for a blended method.

    ``origins`` are the absolute PAN (row, col) of each patch's first pixel (may be
    negative: a patch's margin can lie beyond the scene border), so position-keyed noise
    agrees between overlapping patches; ``lr`` the MS samples when the spec asks for them.
    ``cores``: per patch, the local ``(row0, row1, col0, col1)`` extent of the pixels the
    engine keeps (non-zero blend weight); a method may skip work that touches none of
    them (the windowed sampler's windows in the margin). None: every pixel may be kept.
    """

    ids: list[tuple[int, int]]
    origins: list[tuple[int, int]]
    ms: np.ndarray  # (N, B, P, P) float32, DN / scale, MS resampled onto the PAN grid
    pan: np.ndarray  # (N, 1, P, P) float32, DN / scale
    valid: list[np.ndarray]  # per patch, (P, P) bool
    lr: np.ndarray | None = None
    cores: list[tuple[int, int, int, int]] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, part: slice) -> PatchBatch:
        """The patches ``part`` of this batch (for a smaller batch after out-of-memory)."""
        return PatchBatch(
            self.ids[part],
            self.origins[part],
            self.ms[part],
            self.pan[part],
            self.valid[part],
            None if self.lr is None else self.lr[part],
            None if self.cores is None else self.cores[part],
        )


class TileScan(Protocol):
    """A streaming pass over the scene's tiles, given to ``prepare`` by the executor."""

    def sum(self, halo: int, work: Callable[[Tile], dict[str, Any]]) -> dict[str, Any]:
        """Sum the additive partials ``work(tile)`` over every tile, in tile order."""
        ...


@dataclass
class PrepareContext:
    """What ``check`` and ``prepare`` receive besides the scene."""

    fuse: FuseContext
    sensor: str
    bit_depth: int | None
    settings: RunSettings = field(default_factory=RunSettings)
    scan: TileScan | None = None  # None in ``check``


class Prepared(Protocol):
    """A method ready to fuse batches of one scene."""

    name: str
    spec: MethodSpec
    warnings: list[str]
    device: Any  # a torch.device, or None for numpy methods

    def tags(self) -> dict[str, str]:
        """Output metadata naming what made the image (weights, steps, seed...)."""
        ...

    def apply(self, batch: Any) -> np.ndarray:
        """Fuse one batch (a Tile for exact tiling, a PatchBatch for blended)."""
        ...


Check = Callable[[Any, "Scene", PrepareContext], None]
Prepare = Callable[[Any, "Scene", PrepareContext], Prepared]
