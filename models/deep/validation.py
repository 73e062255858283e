"""Training's validation through the one executor: it scores what ``pansharp fuse`` writes.

Scoring the network on stacked patches measured something no user runs: inference goes
through :func:`tiling.executor.execute` (the tile reader's geometry-aware EXP of the MS,
the normalisation by the weights' scale, blended overlapping patches). So the held-out
areas are written once, at the start of training, as small degraded scenes, and each
validation fuses them through that executor with the network being trained:

1. Crops (:func:`choose_crops`): one per held-out area (a held-out scene, or the
   held-out band of rows of a single scene), centred in it, at most ``side`` x ``side``
   degraded-PAN pixels (:data:`VAL_SIDE` = 1024, i.e. 1 Mpx) and at most
   ``max_regions`` areas (:data:`MAX_VAL_REGIONS`, evenly picked): a few large crops
   rather than many small patches, so patch planning and blending are exercised, with
   a bound on disk, memory and time that does not grow with the scenes. Crop edges lie
   on multiples of the ratio, so the crop's decimation phase is the scene's.
2. Wald's degradation of each crop, streamed in windows read with their halo
   (:func:`degrade_window`), by the training's own rule (:mod:`models.deep.data`):
   MS_LR = decimate(MTF(MS)) (:func:`physics.degrade.degrade_ms`), PAN_LR =
   imresize(PAN, 1/r) (:func:`physics.degrade.degrade_pan`), non-finite values zeroed
   first; the reference is the original MS, NaN where the sampler would refuse a patch
   (an invalid MS pixel within :func:`~models.deep.data.nodata_reach`, an invalid PAN
   block within :data:`~models.deep.data.PAN_REACH`).
3. Files (float32 GeoTIFFs in DN, in a temporary folder beside the weights, removed on
   exit, error or interruption): ``NN_pan.tif`` (PAN_LR), ``NN_ms.tif`` (MS_LR),
   ``NN_ref.tif`` (the reference). Geometry in units of the original PAN pixel: PAN_LR
   and the reference have pixels of ``ratio``, MS_LR of ``ratio^2``, with MS_LR's
   origin half a PAN_LR pixel right of and below PAN_LR's
   (:func:`physics.degrade.degraded_ms_transform`: MS_LR sample k sits on PAN_LR pixel
   r k + r/2, where the decimation took it), so the executor's EXP lands each sample
   where the training's :func:`physics.resample.interp23` does.
4. Scoring (:meth:`Validation.evaluate`): ``execute`` with a
   :class:`models.deep.method.DeepModel` around the current network (eval mode, back
   to its mode after) and a sink that reads the reference window of each strip and
   accumulates, in normalised units (DN / scale, scale = 2^bit_depth - 1),

       val_l1 = sum |F - R| / (N B),   val_psnr_db = 10 log10(1 / (sum (F - R)^2 / (N B)))

   over the N valid pixels and B bands (peak 1); ``val_l1_exp`` is the same L1 of
   ``-m exp`` through the same executor (the network's own input), computed once;
   ``val_pixels`` counts the valid pixels scored, ``val_patches`` the patches the
   executor planned (all crops), ``val_regions`` the crops. Nothing holds a scene
   whole: the executor streams strips, the sink reads windows. A network that equalises
   its inputs by scene statistics (``equalisation_bins``: PreMix-H) is given each crop's
   own, as ``fuse``'s prepare would compute them for that scene, and its buffers are put
   back after.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage

from models.base import FuseContext
from models.deep.data import PAN_REACH, ms_invalid, nodata_reach, pan_invalid
from models.deep.readers import PairReader
from models.protocol import RunSettings
from physics.degrade import degrade_ms, degrade_pan, degraded_ms_transform
from physics.sensors import Sensor
from raster.scene import Scene, open_scene
from tiling.executor import context_for, execute, run_method
from tiling.fuse import GDAL_CACHE_BYTES, FuseOptions, build_context
from tiling.windows import Box, TileSpec

VAL_SIDE = 1024  # largest crop side per held-out area, degraded-PAN pixels (1 Mpx)
MAX_VAL_REGIONS = 4  # held-out areas validated at most (evenly picked): <= 4 Mpx in all
WINDOW = 256  # side of the windows degraded and written at a time (~35 MB each, 4 bands)
FUSE_TILE = FuseOptions().tile  # fuse's --tile: the strips' alignment, as fuse uses it


@dataclass(frozen=True)
class Crop:
    """A validation crop: rows/cols ``box`` of source ``source``'s degraded grid."""

    source: int
    name: str
    box: Box  # (row0, row1, col0, col1), multiples of the ratio

    @property
    def shape(self) -> tuple[int, int]:
        r0, r1, c0, c1 = self.box
        return r1 - r0, c1 - c0

    def describe(self) -> dict[str, Any]:
        """For the weights card: which pixels were validated."""
        r0, r1, c0, c1 = self.box
        return {"scene": self.name, "rows": [r0, r1], "cols": [c0, c1]}


def _span(lo: int, hi: int, ratio: int, side: int) -> tuple[int, int] | None:
    """The centred run of at most ``side`` cells of [lo, hi), ends on multiples of
    ``ratio``; None when fewer than 2 ratio cells fit (an MS_LR of one sample)."""
    a, b = -(-lo // ratio) * ratio, hi // ratio * ratio
    n = min(b - a, side // ratio * ratio)
    if n < 2 * ratio:
        return None
    start = a + (b - a - n) // 2 // ratio * ratio
    return start, start + n


def choose_crops(
    areas: Sequence[tuple[int, Box]],
    names: Sequence[str],
    ratio: int,
    side: int = VAL_SIDE,
    max_regions: int = MAX_VAL_REGIONS,
) -> list[Crop]:
    """One centred crop of at most ``side`` x ``side`` per held-out area, for at most
    ``max_regions`` areas picked evenly in the split's order (deterministic)."""
    if not areas or max_regions < 1:
        return []
    n = len(areas)
    picks = np.unique(np.linspace(0, n - 1, min(max_regions, n)).astype(int)).tolist()
    crops = []
    for k in picks:
        i, (r0, r1, c0, c1) = areas[k]
        rows, cols = _span(r0, r1, ratio, side), _span(c0, c1, ratio, side)
        if rows is not None and cols is not None:
            crops.append(Crop(i, names[i], (*rows, *cols)))
    return crops


def degrade_window(
    reader: PairReader,
    grid: tuple[int, int],
    box: Box,
    gains: Sequence[float],
    ratio: int,
    nodata: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(PAN_LR (h, w), MS_LR (B, h/r, w/r), reference (B, h, w)) of a degraded-grid
    window (edges on multiples of ``ratio``), float64 DN, reading only the window and
    the halo that makes it equal to the whole scene's degradation (as
    :class:`models.deep.sampler.StreamingScene` reads: the MS ``nodata_reach`` around,
    rounded out to the ratio; the PAN blocks ``PAN_REACH`` around). The reference is
    NaN where the sampler's nodata rule spoils the degraded pair.
    """
    r = ratio
    h, w = grid
    y0, y1, x0, x1 = box
    g = nodata_reach(r)
    m0, m1 = max(0, (y0 - g) // r * r), min(h, -(-(y1 + g) // r) * r)
    n0, n1 = max(0, (x0 - g) // r * r), min(w, -(-(x1 + g) // r) * r)
    raw = np.asarray(reader.read_ms(m0, m1, n0, n1))
    ms = raw.astype(np.float64)
    ms = np.where(np.isfinite(ms), ms, 0.0)  # the rule of data.degrade_ms_block
    rows, cols = slice(y0 - m0, y1 - m0), slice(x0 - n0, x1 - n0)
    lr = degrade_ms(ms, list(gains), r)[
        :, (y0 - m0) // r : (y1 - m0) // r, (x0 - n0) // r : (x1 - n0) // r
    ]
    bad = ndimage.maximum_filter(ms_invalid(raw, nodata), size=2 * g + 1, mode="constant")
    bad = bad[rows, cols]
    p0, p1 = max(0, y0 - PAN_REACH), min(h, y1 + PAN_REACH)
    q0, q1 = max(0, x0 - PAN_REACH), min(w, x1 + PAN_REACH)
    raw_pan = np.asarray(reader.read_pan(p0 * r, p1 * r, q0 * r, q1 * r))
    pan = raw_pan.astype(np.float64)
    pan = np.where(np.isfinite(pan), pan, 0.0)  # the rule of data.degrade_pan_block
    pan_lr = degrade_pan(pan, r)[y0 - p0 : y1 - p0, x0 - q0 : x1 - q0]
    bad_pan = ndimage.maximum_filter(
        pan_invalid(raw_pan, r, nodata), size=2 * PAN_REACH + 1, mode="constant"
    )
    bad |= bad_pan[y0 - p0 : y1 - p0, x0 - q0 : x1 - q0]
    ref = ms[:, rows, cols].copy()
    ref[:, bad] = np.nan
    return pan_lr, lr, ref


@dataclass(frozen=True)
class CropFiles:
    """The three files of one written crop (see the module docstring)."""

    crop: Crop
    pan: str
    ms: str
    ref: str


def _create(path: Path, count: int, height: int, width: int, transform: Affine, **kw: Any) -> Any:
    return rasterio.open(
        path,
        "w",
        driver="GTiff",
        count=count,
        height=height,
        width=width,
        dtype="float32",
        transform=transform,
        **kw,
    )


def write_crop(
    reader: PairReader,
    grid: tuple[int, int],
    crop: Crop,
    gains: Sequence[float],
    ratio: int,
    folder: Path | str,
    index: int,
    nodata: float | None = None,
) -> CropFiles:
    """Degrade ``crop`` window by window (:data:`WINDOW` pixels a side, each read with
    its halo: memory set by the window, not the crop or the scene) and write PAN_LR,
    MS_LR and the reference as float32 GeoTIFFs in ``folder``."""
    r = ratio
    y0, y1, x0, x1 = crop.box
    h, w = crop.shape
    pan_t = Affine(float(r), 0.0, float(x0 * r), 0.0, -float(r), -float(y0 * r))
    ms_t = degraded_ms_transform(pan_t, r)
    base = Path(folder)
    paths = [base / f"{index:02d}_{kind}.tif" for kind in ("pan", "ms", "ref")]
    step = max(r, WINDOW // r * r)
    bands = int(reader.n_bands)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), ExitStack() as stack:
        pan_ds = stack.enter_context(_create(paths[0], 1, h, w, pan_t))
        ms_ds = stack.enter_context(_create(paths[1], bands, h // r, w // r, ms_t))
        ref_ds = stack.enter_context(_create(paths[2], bands, h, w, pan_t, nodata=float("nan")))
        for a0 in range(y0, y1, step):
            for b0 in range(x0, x1, step):
                a1, b1 = min(a0 + step, y1), min(b0 + step, x1)
                box = (a0, a1, b0, b1)
                pan_lr, lr, ref = degrade_window(reader, grid, box, gains, r, nodata)
                row, col, rows, cols = a0 - y0, b0 - x0, a1 - a0, b1 - b0
                win = Window(col, row, cols, rows)
                pan_ds.write(pan_lr[None].astype(np.float32), window=win)
                ref_ds.write(ref.astype(np.float32), window=win)
                lr_win = Window(col // r, row // r, cols // r, rows // r)
                ms_ds.write(lr.astype(np.float32), window=lr_win)
    return CropFiles(crop, str(paths[0]), str(paths[1]), str(paths[2]))


@dataclass
class _Score:
    """Sink accumulating the L1 and squared error against the reference, by windows."""

    ref: Any  # an open rasterio dataset
    scene: Scene
    inv_scale: float
    abs_sum: float = 0.0
    sq_sum: float = 0.0
    pixels: int = 0

    def __call__(self, spec: TileSpec, fused: np.ndarray, valid: np.ndarray) -> None:
        win = self.scene.window
        window = Window(
            int(win.col_off) + spec.col, int(win.row_off) + spec.row, spec.width, spec.height
        )
        ref = self.ref.read(window=window).astype(np.float64)
        ok = valid & np.isfinite(ref).all(axis=0)
        n = int(ok.sum())
        if n:
            err = (fused[:, ok].astype(np.float64) - ref[:, ok]) * self.inv_scale
            self.abs_sum += float(np.abs(err).sum())
            self.sq_sum += float(np.square(err).sum())
            self.pixels += n


@dataclass
class _Held:
    files: CropFiles
    scene: Scene
    ctx: FuseContext
    #: the crop's equalisation statistics (networks with ``equalisation_bins``), as
    #: ``fuse``'s prepare computes them for a scene; made on the first validation
    counts: tuple[np.ndarray, np.ndarray] | None = None


def _gdal_env() -> Any:
    """What ``fuse_files`` runs the executor under (no block cache, one GDAL thread)."""
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES, GDAL_NUM_THREADS="1")


@dataclass
class Validation:
    """The written held-out crops, ready to be fused at every validation."""

    crops: list[Crop]
    held: list[_Held]
    ratio: int
    scale: float
    n_bands: int
    folder: Path | None = None
    sensor: str = ""
    exp: dict[str, float] = field(default_factory=dict)
    facts: list[dict[str, Any]] = field(default_factory=list)  # the last run's, per crop

    def _score(self, run: Any) -> tuple[float, float, int, list[dict[str, Any]]]:
        """Sum |err|, err^2 and valid pixels over the crops of ``run(held, sink)``."""
        abs_sum = sq_sum = 0.0
        pixels = 0
        facts = []
        with _gdal_env():
            for held in self.held:
                with rasterio.open(held.files.ref) as ref:
                    score = _Score(ref, held.scene, 1.0 / self.scale)
                    facts.append(run(held, score))
                abs_sum += score.abs_sum
                sq_sum += score.sq_sum
                pixels += score.pixels
        return abs_sum, sq_sum, pixels, facts

    def score_exp(self, sensor: str) -> None:
        """EXP's L1: ``-m exp`` through the same executor (the network's input MS)."""

        def run(held: _Held, sink: _Score) -> dict[str, Any]:
            return run_method(held.scene, "exp", held.ctx, sink, sensor=sensor, tile=FUSE_TILE)

        abs_sum, _, pixels, _ = self._score(run)
        if pixels:
            self.exp = {"val_l1_exp": abs_sum / (pixels * self.n_bands)}

    def evaluate(
        self,
        name: str,
        model: Any,
        card: Any,
        path: Path | str,
        device: Any,
        precision: str = "fp32",
    ) -> dict[str, Any] | None:
        """Fuse every crop with ``model`` (its current weights, ``card``) as ``fuse``
        would with ``--weights path --device D --precision P`` and defaults otherwise;
        the metrics of the module docstring, or None without a valid held-out pixel."""
        if not self.held or not self.exp:
            return None
        settings = RunSettings(weights=str(path), device=str(device), precision=precision)
        from models.deep.method import network_model, scene_histograms
        from models.registry import get_entry

        info = get_entry(name).info
        net = network_model(info, model, card, path, device, self.ratio, settings)
        was_training = model.training
        bins = int(getattr(model, "equalisation_bins", 0) or 0)
        buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
        model.eval()
        try:

            def run(held: _Held, sink: _Score) -> dict[str, Any]:
                if bins > 0:  # each crop equalised by its own statistics, as fuse would
                    if held.counts is None:
                        ctx = context_for(
                            held.scene, held.ctx, self.sensor, settings, tile=FUSE_TILE
                        )
                        held.counts = scene_histograms(ctx, self.n_bands, bins, card)
                    model.set_equalisation(*held.counts)
                return execute(
                    held.scene,
                    net,
                    held.ctx,
                    sink,
                    settings=settings,
                    resampling="exp",
                    tile=FUSE_TILE,
                )

            abs_sum, sq_sum, pixels, facts = self._score(run)
        finally:
            model.train(was_training)
            import torch

            with torch.no_grad():  # the network's own tables back (the card's)
                for k, b in model.named_buffers():
                    b.copy_(buffers[k])
        self.facts = facts
        if pixels == 0:
            return None
        values = pixels * self.n_bands
        mse = sq_sum / values
        return {
            "val_l1": abs_sum / values,
            **self.exp,
            "val_psnr_db": float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf"),
            "val_pixels": pixels,
            "val_patches": int(sum(f.get("patches", 1) for f in facts)),
            "val_regions": len(self.held),
        }


def temp_folder(out_path: Path | str) -> Path:
    """A new empty folder beside the weights (where the checkpoints go)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.name[: -len(".safetensors")] if out.name.endswith(".safetensors") else out.name
    return Path(tempfile.mkdtemp(prefix=f"{stem}.validation-", dir=out.parent))


@contextmanager
def held_out(
    readers: Sequence[PairReader],
    grids: Sequence[tuple[int, int]],
    crops: Sequence[Crop],
    *,
    out_path: Path | str,
    sensor: Sensor,
    ratio: int,
    scale: float,
    bit_depth: int | None,
    nodata: float | None = None,
) -> Iterator[Validation]:
    """Write ``crops`` (degraded) beside ``out_path``, open them, score EXP once; the
    folder is removed when the block ends, however it ends (error, interruption)."""
    n_bands = readers[0].n_bands if readers else 0
    if not crops:
        yield Validation([], [], ratio, scale, n_bands)
        return
    folder = temp_folder(out_path)
    try:
        gains = sensor.gains(n_bands)
        held = []
        opts = FuseOptions(method="exp", sensor=sensor.name)
        for k, crop in enumerate(crops):
            files = write_crop(
                readers[crop.source], grids[crop.source], crop, gains, ratio, folder, k, nodata
            )
            scene = open_scene(files.pan, [files.ms])
            held.append(_Held(files, scene, build_context(scene, sensor, opts, bit_depth)))
        val = Validation(list(crops), held, ratio, scale, n_bands, folder, sensor.name)
        val.score_exp(sensor.name)
        yield val
    finally:
        shutil.rmtree(folder, ignore_errors=True)
