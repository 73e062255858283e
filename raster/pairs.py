"""Training pairs from files: ``PAN.tif:MS.tif``, folders of ``*_pan.tif``/``*_ms.tif``, CSV.

``pansharp train`` takes the user's own scenes in whichever of the three forms they come
in, and the networks need them as whole arrays whose PAN pixels line up with MS pixel
blocks (Wald's protocol decimates the PAN by the ratio). Georeferenced pairs are put
in one geometry by :func:`raster.scene.open_scene`, like ``fuse`` does, and cropped to
the MS pixels whose PAN block lies inside the PAN; ungeoreferenced pairs (the Landsat 7
crops) take ``--ratio`` and are aligned at the top-left corner. Nodata of either image
becomes NaN, which the training data code excludes from patches.
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from errors import GeometryError, InputFileError, OptionError
from physics.sensors import Sensor
from raster.scene import Scene, open_scene
from raster.scene_facts import SceneOptions, decide

PAN_SUFFIXES = ("_pan.tif", "_pan.tiff")


@dataclass(frozen=True)
class PairSpec:
    """One training scene: its PAN and MS files and a short name for the weights card."""

    pan: str
    ms: str
    name: str


@dataclass
class TrainingPairs:
    """Arrays ready for :func:`models.deep.train.train` and what the card should say."""

    pairs: list[tuple[np.ndarray, np.ndarray]]  # (PAN (H, W), MS (B, h, w)) float32 DN
    names: list[str]
    ratio: int
    bit_depth: int | None
    band_names: list[str] | None
    specs: list[PairSpec] = field(default_factory=list)


def expand_specs(items: list[str]) -> list[PairSpec]:
    """Turn command-line scene arguments into PAN/MS file pairs (order kept)."""
    if not items:
        raise OptionError("give at least one scene: PAN.tif:MS.tif, a folder or a CSV manifest")
    out: list[PairSpec] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(_folder_pairs(p))
        elif p.is_file() and p.suffix.lower() == ".csv":
            out.extend(_manifest_pairs(p))
        elif ":" in item and not p.exists():
            out.append(_colon_pair(item))
        elif p.exists():
            raise OptionError(
                f"scene {item!r} is a single file; give PAN.tif:MS.tif, a folder of "
                f"*_pan.tif/*_ms.tif pairs, or a CSV manifest with pan,ms columns"
            )
        else:
            raise InputFileError(f"scene {item!r} not found (a PAN.tif:MS.tif pair, folder or CSV)")
    names = [s.name for s in out]
    if len(set(names)) != len(names):  # the card lists scenes by name: keep them distinct
        out = [PairSpec(s.pan, s.ms, f"{s.name}#{i}") for i, s in enumerate(out)]
    return out


def _colon_pair(item: str) -> PairSpec:
    """``PAN:MS``; the split is the colon after which both sides exist (paths may hold one)."""
    for i, ch in enumerate(item):
        if ch == ":" and Path(item[:i]).is_file() and Path(item[i + 1 :]).is_file():
            return PairSpec(item[:i], item[i + 1 :], Path(item[:i]).stem)
    pan, _, ms = item.rpartition(":")
    missing = [x for x in (pan, ms) if not Path(x).is_file()]
    raise InputFileError(
        f"scene {item!r}: file not found: {', '.join(missing) or item} (expected PAN.tif:MS.tif)"
    )


def _folder_pairs(folder: Path) -> list[PairSpec]:
    pans = sorted(p for p in folder.iterdir() if p.name.lower().endswith(PAN_SUFFIXES))
    if not pans:
        raise InputFileError(
            f"folder {folder} has no *_pan.tif files (expected NAME_pan.tif + NAME_ms.tif)"
        )
    out = []
    for pan in pans:
        stem = pan.name[: pan.name.lower().rfind("_pan")]
        cands = [
            folder / f"{stem}{s}{ext}" for s in ("_ms", "_MS") for ext in (".tif", ".tiff", ".TIF")
        ]
        ms = next((c for c in cands if c.is_file()), None)
        if ms is None:
            raise InputFileError(f"{pan} has no matching {stem}_ms.tif in {folder}")
        out.append(PairSpec(str(pan), str(ms), stem))
    return out


def _manifest_pairs(path: Path) -> list[PairSpec]:
    """CSV with ``pan`` and ``ms`` columns (paths relative to the CSV), optional ``name``."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(f"cannot read manifest {path} ({exc})") from None
    if not rows or not {"pan", "ms"} <= {k.strip().lower() for k in rows[0] if k}:
        raise OptionError(f"manifest {path} needs a header with pan and ms columns (and rows)")
    out = []
    for n, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        pan, ms = (path.parent / row["pan"], path.parent / row["ms"])
        for role, p in (("pan", pan), ("ms", ms)):
            if not row[role] or not p.is_file():
                raise InputFileError(f"manifest {path} line {n}: {role} file {p} not found")
        out.append(PairSpec(str(pan), str(ms), row.get("name") or pan.stem))
    return out


def _crop(scene: Scene) -> tuple[Window, Window, int]:
    """PAN and MS windows where MS pixel j covers PAN pixels [k j, k j + k) of the crop.

    MS pixel j starts at PAN position (j - 0.5 - b) / a (scene maps); a half-pixel
    offset (Landsat's PAN grid) is rounded to the nearest PAN pixel.
    """
    k = scene.ratio
    out = []
    for (a, b), n_pan, n_ms in zip(
        (scene.row_map, scene.col_map), scene.pan_shape, scene.ms_shape, strict=True
    ):
        i0 = math.floor((-0.5 - b) / a + 0.5 + 1e-9)
        j0 = max(0, math.ceil(-i0 / k))
        start = i0 + j0 * k
        n = min(n_ms - j0, (n_pan - start) // k)
        if n < 1:
            raise GeometryError("PAN and MS do not overlap by one whole MS pixel")
        out.append((start, j0, n))
    (pr, mr, nr), (pc, mc, nc) = out
    return Window(pc, pr, nc * k, nr * k), Window(mc, mr, nc, nr), k


def read_pair(
    spec: PairSpec, ratio: int | None, nodata: float | None
) -> tuple[np.ndarray, np.ndarray, Scene]:
    """(PAN (H, W), MS (B, H/k, W/k)) float32 with NaN for nodata, and the opened scene.

    rasterio's NotGeoreferencedWarning is silenced: ungeoreferenced pairs are expected
    here (``--ratio`` says how they fit), and a warning per file would bury the bar.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return _read_pair(spec, ratio, nodata)


def _read_pair(
    spec: PairSpec, ratio: int | None, nodata: float | None
) -> tuple[np.ndarray, np.ndarray, Scene]:
    scene = open_scene(spec.pan, [spec.ms], ratio=ratio, nodata=nodata)
    if scene.warp is not None:
        raise GeometryError(
            f"{spec.ms} is in another CRS than {spec.pan}; reproject it onto the PAN's CRS "
            "(gdalwarp) before training"
        )
    pan_win, ms_win, _ = _crop(scene)
    with rasterio.open(spec.pan) as ds:
        pan = ds.read(1, window=pan_win).astype(np.float32)
    with rasterio.open(spec.ms) as ds:
        ms = ds.read(window=ms_win).astype(np.float32)
    for arr, nd in ((pan, scene.pan_nodata), (ms, scene.ms_nodata)):
        if nd is not None:
            arr[arr == nd] = np.nan
    return pan, ms, scene


class SceneAgreement:
    """The rules every set of training scenes follows, scene by scene as they open.

    The first scene decides the bit depth (the normalisation stored with the weights) as
    ``fuse`` decides it for the same files (:func:`raster.scene_facts.decide`), so
    training and inference divide by the same number, and the band names a weights card
    records (:meth:`raster.scene_facts.SceneFacts.card_band_names`); every later scene
    must have its ratio and band count.
    """

    def __init__(self, sensor: Sensor, bit_depth: int | None = None) -> None:
        self.sensor, self.option = sensor, bit_depth
        self.ratio: int | None = None
        self.bands: int | None = None
        self.bit_depth: int | None = None
        self.band_names: list[str] | None = None

    def add(self, spec: PairSpec, scene: Scene) -> None:
        """Take the first scene's facts, or check a later one against them."""
        if self.ratio is None:
            facts = decide(scene, SceneOptions(self.sensor, self.option))
            self.ratio, self.bands = facts.ratio, facts.n_bands
            self.bit_depth = facts.bits
            self.band_names = facts.card_band_names()
        elif scene.ratio != self.ratio:
            raise OptionError(
                f"scene {spec.name} has ratio {scene.ratio}, the first has {self.ratio}: "
                "weights are trained for one ratio; train separate weights"
            )
        elif scene.n_bands != self.bands:
            raise OptionError(
                f"scene {spec.name} has {scene.n_bands} MS bands, the first has "
                f"{self.bands}: every training scene needs the same bands"
            )

    def agreed_ratio(self) -> int:
        """The scenes' ratio; refuses an empty set."""
        if self.ratio is None:
            raise OptionError("give at least one scene: PAN.tif:MS.tif, a folder or a CSV manifest")
        return self.ratio


def read_training_pairs(
    specs: list[PairSpec],
    sensor: Sensor,
    ratio: int | None = None,
    nodata: float | None = None,
    bit_depth: int | None = None,
) -> TrainingPairs:
    """Read every pair; they follow the rules of :class:`SceneAgreement`."""
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    agreement = SceneAgreement(sensor, bit_depth)
    for spec in specs:
        pan, ms, scene = read_pair(spec, ratio, nodata)
        agreement.add(spec, scene)
        pairs.append((pan, ms))
    k = agreement.agreed_ratio()
    names = [s.name for s in specs]
    return TrainingPairs(pairs, names, k, agreement.bit_depth, agreement.band_names, list(specs))
