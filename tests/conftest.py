"""Seeded factory fixtures: small PAN/MS GeoTIFF pairs of any size, type and geometry."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLE = Path(__file__).resolve().parents[1] / "sample_scenes" / "landsat8"


def needs_shared(sub: str = "") -> pytest.MarkDecorator:
    """Skip (with the reason) when ../shared/data is not beside the project."""
    path = SHARED / sub
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not present (../shared/data)")


@dataclass
class ScenePaths:
    pan: str
    ms: list[str]
    truth: np.ndarray  # (B, H, W) float, the high-resolution cube the pair was made from


def write_raster(
    path: Path, arr: np.ndarray, transform: Affine, crs: str = "EPSG:32631", **kw
) -> str:
    """Write a (B, H, W) array as a GeoTIFF of its own dtype (``kw``: nodata, nbits...)."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        count=arr.shape[0],
        height=arr.shape[1],
        width=arr.shape[2],
        dtype=arr.dtype.name,
        crs=crs,
        transform=transform,
        **kw,
    ) as ds:
        ds.write(arr)
    return str(path)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """A smooth random field in [0, 1] (sum of random sinusoids): image-like structure."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    f = np.zeros(shape)
    for _ in range(12):
        fy, fx = rng.uniform(-1, 1, 2) / scale
        f += rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 6.3))
    f -= f.min()
    return f / max(f.max(), 1e-12)


@pytest.fixture
def make_scene(tmp_path: Path) -> Callable[..., ScenePaths]:
    """Factory: ``make_scene(pan_shape=(H, W), ratio=4, bands=4, dtype='uint16', ...)``.

    The truth cube has shared edges plus per-band texture; PAN is a weighted band sum;
    MS is the truth block-averaged by ``ratio``. ``offset`` shifts the MS grid origin
    by that many PAN pixels (Landsat: 0.5 with ratio 2). ``single_band_files`` writes
    the MS as one file per band.
    """

    def factory(
        pan_shape: tuple[int, int] = (160, 200),
        ratio: int = 4,
        bands: int = 4,
        dtype: str = "uint16",
        seed: int = 0,
        nodata: float | None = None,
        nodata_box: tuple[int, int, int, int] | None = None,
        offset: float = 0.0,
        single_band_files: bool = False,
        crs: str | None = "EPSG:32631",
        georeferenced: bool = True,
        name: str = "scene",
        ms_crs: str | None = None,
    ) -> ScenePaths:
        rng = np.random.default_rng(seed)
        h, w = pan_shape
        hm, wm = h // ratio, w // ratio
        H, W = hm * ratio, wm * ratio
        base = smooth_field(rng, (H, W), 12.0)
        cube = np.stack(
            [0.6 * base + 0.4 * smooth_field(rng, (H, W), 6.0 + 3 * b) for b in range(bands)]
        )
        if np.dtype(dtype).kind == "f":
            lo, hi = 0.01, 0.6
        elif dtype == "uint8":
            lo, hi = 10, 240
        elif dtype == "int16":
            lo, hi = -200, 3000
        else:
            lo, hi = 100, 2000
        cube = lo + (hi - lo) * cube
        pan = cube.mean(axis=0)
        ms = cube.reshape(bands, hm, ratio, wm, ratio).mean(axis=(2, 4))
        if nodata is not None and nodata_box is not None:
            r0, c0, r1, c1 = nodata_box
            ms[:, r0 // ratio : r1 // ratio, c0 // ratio : c1 // ratio] = nodata
            pan[r0:r1, c0:c1] = nodata
        px = 0.5
        pan_t = Affine(px, 0, 500000.0, 0, -px, 5000000.0) if georeferenced else None
        ms_t = (
            Affine(px * ratio, 0, 500000.0 + offset * px, 0, -px * ratio, 5000000.0 - offset * px)
            if georeferenced
            else None
        )
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)

        def write(path: Path, arr: np.ndarray, t, c) -> None:
            kw = dict(driver="GTiff", count=arr.shape[0], height=arr.shape[1], width=arr.shape[2])
            if t is not None:
                kw.update(transform=t, crs=c)
            with rasterio.open(path, "w", dtype=dtype, nodata=nodata, **kw) as ds:
                ds.write(np.rint(arr).astype(dtype) if np.dtype(dtype).kind != "f" else arr)

        pan_path = folder / "pan.tif"
        write(pan_path, pan[None], pan_t, crs)
        if single_band_files:
            ms_paths = []
            for b in range(bands):
                p = folder / f"ms_b{b + 1}.tif"
                write(p, ms[b : b + 1], ms_t, crs)
                ms_paths.append(str(p))
        else:
            p = folder / "ms.tif"
            write(p, ms, ms_t, crs)
            ms_paths = [str(p)]
        return ScenePaths(str(pan_path), ms_paths, cube)

    return factory


@pytest.fixture(autouse=True)
def _few_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread and seed 0 for a torch test module (``pytestmark =
    pytest.mark.usefixtures("one_torch_thread")``): the tensors are tiny, and OpenMP
    threads spin badly on a busy 2-core machine. torch is imported only when used."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)
