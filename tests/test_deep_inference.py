"""Deep models through the one executor (tiling.executor) and ``pansharp fuse``/``train``.

Registry-driven: every local deep model must give, tiled, exactly the whole-image
result; blending must leave no seam; weights from ``pansharp train`` must load in
``fuse``; wrong or unsafe weights give one clear line; an out-of-memory error halves the
batch inside the engine.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rio_cogeo.cogeo import cog_validate
from torch import nn

from errors import OptionError
from models.base import FuseContext
from models.deep.card import WeightsCard
from models.deep.method import DeepModel, auto_batch, patch_bytes
from models.deep.weights import save_weights
from models.protocol import RunSettings, parse_batch_size
from models.registry import REGISTRY, create_model, model_names
from pansharp_cli.main import main
from raster.pairs import expand_specs
from raster.scene import open_scene
from tests.conftest import SHARED
from tests.floats import accumulation_length, assert_rounding_close
from tiling.executor import execute
from tiling.fuse import FuseOptions, build_context, fuse_files, resolve_sensor
from tiling.patches import (
    CPU_BUDGET_BYTES,
    CUDA_FREE_FRACTION,
    MAX_AUTO_BATCH,
    plan_axis,
    plan_patches,
)

DEEP = model_names("deep")
# Local models as registered, plus the global-context ones made local (LAGNet's
# global_bias=False), so every architecture is checked for exact tiling.
LOCAL_CASES = [(n, {}) for n in DEEP if not REGISTRY[n].info.extra.get("global_context")] + [
    (n, {"global_bias": False}) for n in DEEP if REGISTRY[n].info.extra.get("global_context")
]
SCALE = 65535.0
L7 = SHARED / "landsat7_crops"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_weights(
    path: Path,
    name: str,
    n_bands: int = 4,
    ratio: int = 4,
    sensor: str = "generic",
    seed: int = 0,
    **kwargs,
) -> Path:
    """Random-initialised (seeded) weights with a card for a synthetic scene."""
    torch.manual_seed(seed)
    if REGISTRY[name].info.extra.get("physics"):  # operators built for the card's ratio
        kwargs.setdefault("ratio", ratio)
    model = create_model(name, n_bands=n_bands, **kwargs)
    card = WeightsCard(
        model=name,
        kwargs=dict(model.config),
        sensor=sensor,
        band_names=[f"b{i + 1}" for i in range(n_bands)],
        ratio=ratio,
        bit_depth=16,
        scale=SCALE,
    )
    return save_weights(path, model, card)


def fused(scene, tmp_path: Path, name: str, **opts) -> np.ndarray:
    out = tmp_path / f"{name}_{len(list(tmp_path.iterdir()))}.tif"
    fuse_files(scene.pan, scene.ms, str(out), FuseOptions(method=name, dtype="float32", **opts))
    with rasterio.open(out) as ds:
        return ds.read()


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and "Warning" not in ln]
    lines = [ln for ln in lines if not ln.startswith("  ")]  # warnings' source lines
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith("pansharp: error:")
    return lines[0]


# -- the patch plan ---------------------------------------------------------------------
@pytest.mark.parametrize("length", [1, 37, 100, 257, 1000])
def test_axis_plan_covers_with_partition_of_unity(length):
    ax = plan_axis(length, patch=64, margin=5, ramp=8)
    total = np.zeros(length)
    for i, start in enumerate(ax.starts):
        w = ax.weights(i)
        lo, hi = start, start + ax.patch
        assert lo >= -ax.margin and hi <= length + ax.margin, "patch reaches past its margin"
        assert not w[: ax.margin].any() and not w[ax.patch - ax.margin :].any()
        seg = w[max(0, -lo) : ax.patch - max(0, hi - length)]
        total[max(lo, 0) : min(hi, length)] += seg
    assert (total > 0.999).all(), "a pixel has no weight"
    if len(ax.starts) > 1:  # regular steps: complementary ramps sum to one
        # two float32-rounded weights meet: sin^2 + cos^2 = 1 to within 2 x eps/2
        end = ax.core_start(len(ax.starts) - 1)
        assert_rounding_close(total[:end], np.ones(end), terms=1)


def test_plan_options_checked():
    assert plan_patches(100, 100, halo=10).exact
    assert not plan_patches(100, 100, halo=10, tile=64, overlap=8).exact
    with pytest.raises(OptionError, match="--overlap"):
        plan_patches(100, 100, halo=10, tile=40, overlap=30)
    assert parse_batch_size("auto") is None and parse_batch_size("3") == 3
    for bad in ("0", "-2", "big"):
        with pytest.raises(OptionError, match="--batch-size"):
            parse_batch_size(bad)


def test_auto_batch_follows_device_memory(monkeypatch):
    """The CUDA branch runs on the CPU build with the free-memory query faked."""
    model = create_model("fusionnet", n_bands=4)
    free = 6 << 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 16 << 30))
    cuda = torch.device("cuda:0")
    per32 = patch_bytes(model, 4, (512, 512), 4)
    b32 = auto_batch(model, cuda, 4, (512, 512), "fp32")
    assert b32 == min(MAX_AUTO_BATCH, int(free * CUDA_FREE_FRACTION) // per32) and b32 > 1
    per16 = patch_bytes(model, 4, (512, 512), 2)  # half precision: half the bytes
    b16 = auto_batch(model, cuda, 4, (512, 512), "bf16")
    assert b16 == min(MAX_AUTO_BATCH, int(free * CUDA_FREE_FRACTION) // per16) >= 2 * b32
    free = 1 << 20  # almost nothing free: still one patch, the OOM fallback does the rest
    assert auto_batch(model, cuda, 4, (512, 512), "fp32") == 1
    cpu = torch.device("cpu")
    assert auto_batch(model, cpu, 4, (1024, 1024), "fp32") == 1  # big patches one by one
    small = auto_batch(model, cpu, 4, (128, 128), "fp16")  # no half precision on the CPU
    assert small == min(MAX_AUTO_BATCH, CPU_BUDGET_BYTES // patch_bytes(model, 4, (128, 128), 4))


# -- tiled == whole image --------------------------------------------------------------------
@pytest.mark.parametrize(("name", "kwargs"), LOCAL_CASES, ids=[c[0] for c in LOCAL_CASES])
def test_tiled_equals_whole_image(make_scene, tmp_path, name, kwargs):
    physics = {"ratio": 2} if REGISTRY[name].info.extra.get("physics") else {}
    net = create_model(name, n_bands=3, **kwargs, **physics)
    halo = net.halo
    patch = 4 * halo + 48  # the overlap (2 halo + ramp) is at most half the patch
    # not a tile multiple, and several patches each way even for the widest halos
    shape = (max(132, patch + 61), max(150, patch + 79))
    scene = make_scene(pan_shape=shape, ratio=2, bands=3, seed=3)
    w = write_weights(tmp_path / "w.safetensors", name, n_bands=3, ratio=2, **kwargs)
    plan = plan_patches(*shape, halo, tile=patch)
    assert plan.exact and len(plan.rows.starts) > 1 and len(plan.cols.starts) > 1
    whole = fused(scene, tmp_path, name, weights=str(w), patch=4096, threads=1)
    tiled = fused(scene, tmp_path, name, weights=str(w), patch=patch, batch_size=3, threads=1)
    assert np.isfinite(whole).all()
    # float32 rounding of other convolution blockings only (tests/floats.py)
    assert_rounding_close(tiled, whole, accumulation_length(net))


def test_overlap_below_receptive_field_is_not_exact(make_scene, tmp_path):
    """The equality above is not vacuous: too small an overlap does change the result."""
    scene = make_scene(pan_shape=(132, 150), ratio=2, bands=3, seed=3)
    w = write_weights(tmp_path / "w.safetensors", "fusionnet", n_bands=3, ratio=2)
    whole = fused(scene, tmp_path, "fusionnet", weights=str(w), patch=4096)
    tiled = fused(scene, tmp_path, "fusionnet", weights=str(w), patch=48, overlap=2)
    assert np.abs(tiled - whole).max() / SCALE > 1e-4


# -- seams ---------------------------------------------------------------------------------------
def smooth_scene(folder: Path, shape: tuple[int, int], ratio: int, bands: int) -> SimpleNamespace:
    """A georeferenced uint16 scene whose bands are planes plus a slow wave: every column
    difference inside a patch is nearly the same, so a seam would stand out."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cube = np.stack(
        [
            2000 + (3 + b) * xx + 2 * yy + 300 * np.sin(2 * np.pi * (xx / 700 + b / 5))
            for b in range(bands)
        ]
    )
    ms = cube.reshape(bands, h // ratio, ratio, w // ratio, ratio).mean(axis=(2, 4))
    pan_t = Affine(1.0, 0, 500000.0, 0, -1.0, 5000000.0)
    ms_t = Affine(float(ratio), 0, 500000.0, 0, -float(ratio), 5000000.0)
    paths = []
    for name, arr, t in (("pan", cube.mean(axis=0)[None], pan_t), ("ms", ms, ms_t)):
        p = folder / f"smooth_{name}.tif"
        with rasterio.open(
            p,
            "w",
            driver="GTiff",
            count=arr.shape[0],
            height=arr.shape[1],
            width=arr.shape[2],
            dtype="uint16",
            crs="EPSG:32631",
            transform=t,
        ) as ds:
            ds.write(np.rint(arr).astype("uint16"))
        paths.append(str(p))
    return SimpleNamespace(pan=paths[0], ms=[paths[1]])


def _seam_ratio(img: np.ndarray, plan) -> float:
    """Largest mean |column difference| where patches meet / the largest inside patches.

    Patches meet over each patch's first and last weighted columns (the last patch of a
    row is shifted back, so its neighbour's end is elsewhere); the scene's own edges
    count as neither.
    """
    dx = np.abs(np.diff(img.astype(np.float64), axis=2)).mean(axis=(0, 1))
    ax = plan.cols
    near = np.zeros(dx.size, dtype=bool)
    reach = ax.ramp + plan.halo + 2  # the blend plus what the dropped margin left in
    for j in range(len(ax.starts)):
        lo, hi = ax.core_start(j), ax.core_start(j) + ax.core
        if j > 0:
            near[max(0, lo - 2) : lo + reach] = True
        if j < len(ax.starts) - 1:
            near[max(0, hi - reach) : hi + 2] = True
    inside = ~near
    inside[:reach] = inside[-reach:] = False  # scene edges: no neighbour, zero padding
    assert near.any() and inside.any()
    return float(dx[near].max() / dx[inside].max())


@pytest.mark.parametrize(("name", "overlap"), [("fusionnet", "2halo"), ("lagnet", None)])
def test_no_seam_at_patch_borders(make_scene, tmp_path, name, overlap):
    """Overlap below the receptive field (fusionnet) or a global-context model (LAGNet's
    global bias at the default overlap): neighbouring patches disagree, and the cosine
    blend must hide it - differences where patches meet no larger than inside them."""
    scene = smooth_scene(tmp_path, (48, 480), ratio=2, bands=3)
    w = write_weights(tmp_path / "w.safetensors", name, n_bands=3, ratio=2, seed=1)
    halo = create_model(name, n_bands=3).halo
    ov = 2 * halo if overlap == "2halo" else None
    plan = plan_patches(48, 480, halo, tile=120, overlap=ov)
    assert len(plan.cols.starts) >= 4
    blended = fused(scene, tmp_path, name, weights=str(w), patch=120, overlap=ov)
    ratio = _seam_ratio(blended, plan)
    assert ratio <= 1.0, f"{name}: seam {ratio:.2f}x the largest difference inside patches"
    # the measure does see the seams of patches simply butted together
    hard = plan_patches(48, 480, halo, tile=120, overlap=0)
    butted = fused(scene, tmp_path, name, weights=str(w), patch=120, overlap=0)
    assert _seam_ratio(butted, hard) > 2.0


# -- out-of-memory fallback inside the engine ------------------------------------------------
class OomAboveOne(nn.Module):
    """Wraps a network; raises CUDA's out-of-memory error for batches larger than one."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[int] = []

    def forward(self, ms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        self.calls.append(ms.shape[0])
        if ms.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(ms, pan)


def _engine(scene_paths, model: nn.Module, batch: int) -> tuple[np.ndarray, dict]:
    scene = open_scene(scene_paths.pan, scene_paths.ms)
    sensor = resolve_sensor(scene, None)
    ctx: FuseContext = build_context(scene, sensor, FuseOptions(), 16)
    card = WeightsCard("dicnn", {"n_bands": 3}, "generic", [], 2, 16, SCALE)
    deep = DeepModel(
        "dicnn",
        model,
        card,
        Path("w"),
        torch.device("cpu"),
        3,
        RunSettings(batch_size=batch, tile=40),
    )
    h, w = scene.out_shape
    out = np.full((3, h, w), np.nan, dtype=np.float32)

    def sink(spec, fused_dn, valid):
        out[:, spec.row : spec.row + spec.height, spec.col : spec.col + spec.width] = fused_dn

    facts = execute(scene, deep, ctx, sink, settings=deep.settings)
    return out, facts


def test_oom_halves_batch_in_engine(make_scene, caplog):
    scene = make_scene(pan_shape=(90, 100), ratio=2, bands=3, seed=2)
    torch.manual_seed(0)
    net = create_model("dicnn", n_bands=3).eval()
    ref, _ = _engine(scene, net, batch=1)
    flaky = OomAboveOne(net)
    with caplog.at_level(logging.WARNING, logger="pansharp.deep"):
        got, facts = _engine(scene, flaky, batch=4)
    msgs = [r.getMessage() for r in caplog.records]
    assert any("batch 4; retrying with batch 2" in m for m in msgs), msgs
    assert any("batch 2; retrying with batch 1" in m for m in msgs), msgs
    assert facts["batch_size"] == 1
    assert flaky.calls.count(4) == 1, "later batches must keep the size that fitted"
    assert np.isfinite(got).all()
    assert_rounding_close(got, ref, accumulation_length(net))  # other batch, other blocking


# -- fuse: output, weights errors --------------------------------------------------------------
def test_output_is_a_cog_georeferenced_like_classical(make_scene, tmp_path):
    scene = make_scene(pan_shape=(260, 300), ratio=4, bands=4, seed=4)
    w = write_weights(tmp_path / "w.safetensors", "fusionnet")
    deep_out, classic = tmp_path / "deep.tif", tmp_path / "brovey.tif"
    fuse_files(scene.pan, scene.ms, str(deep_out), FuseOptions(method="fusionnet", weights=str(w)))
    fuse_files(scene.pan, scene.ms, str(classic), FuseOptions(method="brovey"))
    valid, errors, _ = cog_validate(str(deep_out), strict=True)
    assert valid, errors
    with rasterio.open(deep_out) as d, rasterio.open(classic) as c:
        for key in ("crs", "transform", "width", "height", "count", "dtype", "nodata"):
            assert d.profile[key] == c.profile[key], key
        assert d.block_shapes == c.block_shapes
        assert d.overviews(1) == c.overviews(1)
        assert d.tags()["PANSHARP_METHOD"] == "fusionnet"
        assert d.tags()["PANSHARP_WEIGHTS"] == "w.safetensors"
        a = d.read().astype(np.float64)
    # random weights still add details to ms_up: the result tracks the truth
    assert np.corrcoef(a[0].ravel(), scene.truth[0].ravel())[0, 1] > 0.8


@pytest.mark.parametrize(("dtype", "nodata"), [("uint16", 0), ("float32", float("nan"))])
def test_nodata_stays_nodata(make_scene, tmp_path, dtype, nodata):
    """Nodata pixels come out as nodata; NaN inputs do not spread through the network."""
    scene = make_scene(
        pan_shape=(192, 200), ratio=4, bands=4, dtype=dtype, nodata=nodata,
        nodata_box=(0, 0, 64, 96),
    )  # fmt: skip
    w = write_weights(tmp_path / "w.safetensors", "fusionnet")
    out = tmp_path / "o.tif"
    fuse_files(
        scene.pan, scene.ms, str(out), FuseOptions(method="fusionnet", weights=str(w), patch=96)
    )
    with rasterio.open(out) as ds:
        arr = ds.read().astype(np.float64)
        assert (np.isnan(ds.nodata) and np.isnan(nodata)) or ds.nodata == nodata
    box = arr[:, :64, :96]
    assert (np.isnan(box) if np.isnan(nodata) else box == nodata).all()
    rest = arr[:, 80:, 110:]
    assert np.isfinite(rest).all() and (rest != 0).all()


def test_weights_that_do_not_fit_are_refused(make_scene, tmp_path, capsys):
    scene = make_scene(pan_shape=(96, 96), ratio=4, bands=4)
    base = ["fuse", scene.pan, *scene.ms, "-m", "dicnn", "-o", str(tmp_path / "o.tif")]
    cases = {
        "bands": (write_weights(tmp_path / "b.safetensors", "dicnn", n_bands=6), "6 bands"),
        "ratio": (write_weights(tmp_path / "r.safetensors", "dicnn", ratio=2), "ratio 2"),
        "sensor": (
            write_weights(tmp_path / "s.safetensors", "dicnn", sensor="landsat8"),
            "'landsat8'",
        ),
        "model": (write_weights(tmp_path / "m.safetensors", "pnn"), "-m pnn"),
    }
    for what, (path, needle) in cases.items():
        code, err = run_cli([*base, "--weights", str(path)], capsys)
        line = one_line(err)
        assert code == 6 and needle in line, (what, line)
    assert not (tmp_path / "o.tif").exists()


def test_pickle_weights_refused_without_unpickling(make_scene, tmp_path, capsys, monkeypatch):
    scene = make_scene(pan_shape=(96, 96), ratio=4, bands=4)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    out = tmp_path / "o.tif"
    code, err = run_cli(
        ["fuse", scene.pan, *scene.ms, "-m", "fusionnet", "--weights", str(evil), "-o", str(out)],
        capsys,
    )
    assert code == 6 and "pickle" in one_line(err)
    assert not out.exists()


def test_missing_default_weights_names_the_fixes(make_scene, tmp_path, capsys):
    scene = make_scene(pan_shape=(96, 96), ratio=4, bands=4)
    code, err = run_cli(
        ["fuse", scene.pan, *scene.ms, "-m", "pannet", "-o", str(tmp_path / "o.tif")], capsys
    )
    line = one_line(err)
    assert code == 6 and "--weights" in line and "pansharp train" in line


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--device", "cuda", "--device"),
        ("--device", "tpu", "--device"),
        ("--precision", "fp8", "--precision"),
        ("--batch-size", "0", "--batch-size"),
        ("--overlap", "900", "--overlap"),
    ],
)
def test_deep_option_errors(make_scene, tmp_path, capsys, flag, value, needle):
    scene = make_scene(pan_shape=(96, 96), ratio=4, bands=4)
    w = write_weights(tmp_path / "w.safetensors", "dicnn")
    args = ["fuse", scene.pan, *scene.ms, "-m", "dicnn", "--weights", str(w)]
    code, err = run_cli([*args, flag, value, "-o", str(tmp_path / "o.tif")], capsys)
    assert code == 2 and needle in one_line(err)


# -- pansharp train -> fuse -------------------------------------------------------------------
@pytest.fixture
def training_scene(make_scene) -> tuple[str, str, str]:
    """(PAN, MS, sensor): a Landsat 7 crop (ungeoreferenced, ratio 2) or a synthetic pair."""
    if (L7 / "scene01_pan.tif").exists():
        return str(L7 / "scene01_pan.tif"), str(L7 / "scene01_ms.tif"), "landsat7"
    s = make_scene(pan_shape=(256, 256), ratio=2, bands=6, dtype="uint8", georeferenced=False)
    return s.pan, s.ms[0], "landsat7"


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_train_200_steps_then_fuse(training_scene, tmp_path, capsys):
    pan, ms, sensor = training_scene
    weights = tmp_path / "dicnn_l7.safetensors"
    code, err = run_cli(
        ["train", "-m", "dicnn", f"{pan}:{ms}", "--sensor", sensor, "--ratio", "2",
         "--steps", "200", "--patch", "16", "--batch-size", "4", "-o", str(weights), "--quiet"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert weights.is_file() and weights.with_name("dicnn_l7.ckpt.safetensors").is_file()
    out = tmp_path / "fused.tif"
    code, err = run_cli(
        ["fuse", pan, ms, "--ratio", "2", "--sensor", sensor, "-m", "dicnn",
         "--weights", str(weights), "-o", str(out), "--quiet"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    with rasterio.open(out) as o, rasterio.open(pan) as p, rasterio.open(ms) as m:
        assert (o.count, o.height, o.width) == (m.count, p.height, p.width)
        assert o.tags()["PANSHARP_WEIGHTS"] == weights.name
        arr = o.read().astype(np.float64)
        ms_arr = m.read().astype(np.float64)
    # 200 steps from random weights: the output is already an image with the MS's levels
    assert abs(arr.mean() - ms_arr.mean()) < 0.1 * ms_arr.mean()
    # the weights are for 6 bands at ratio 2: a 4-band scene is refused clearly
    code, err = run_cli(
        ["fuse", pan, ms, "--ratio", "2", "--sensor", "landsat8", "-m", "dicnn",
         "--weights", str(weights), "-o", str(tmp_path / "x.tif")],
        capsys,
    )  # fmt: skip
    assert code == 6 and "'landsat7'" in one_line(err)


def test_train_input_errors(tmp_path, capsys, make_scene):
    s = make_scene(pan_shape=(64, 64), ratio=2, bands=3)
    out = str(tmp_path / "w.safetensors")
    base = ["train", "-m", "dicnn", "--sensor", "landsat8", "--steps", "1", "-o", out]
    cases = [
        ([str(tmp_path / "nope_pan.tif:nope_ms.tif")], 3, "not found"),
        ([s.pan], 2, "PAN.tif:MS.tif"),
        ([str(tmp_path)], 3, "_pan.tif"),
        ([f"{s.pan}:{s.ms[0]}", "--ratio", "3"], 4, "--ratio"),
    ]
    for extra, want, needle in cases:
        code, err = run_cli([*base[:3], *extra, *base[3:]], capsys)
        line = one_line(err)
        assert code == want and needle in line, (extra, line)
    code, err = run_cli(["train", "-m", "brovey", f"{s.pan}:{s.ms[0]}", *base[3:]], capsys)
    assert code == 2 and "not a deep model" in one_line(err)
    code, err = run_cli([*base[:3], f"{s.pan}:{s.ms[0]}", *base[3:-1], "w.pt"], capsys)
    assert code == 2 and ".safetensors" in one_line(err)
    assert not Path(out).exists()


def test_scene_specs_folder_and_manifest(tmp_path, make_scene):
    a = make_scene(pan_shape=(64, 64), ratio=2, bands=3, name="a")
    b = make_scene(pan_shape=(64, 64), ratio=2, bands=3, name="b")
    folder = tmp_path / "pairs"
    folder.mkdir()
    for s, stem in ((a, "x1"), (b, "x2")):
        (folder / f"{stem}_pan.tif").write_bytes(Path(s.pan).read_bytes())
        (folder / f"{stem}_ms.tif").write_bytes(Path(s.ms[0]).read_bytes())
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"pan,ms\n{a.pan},{a.ms[0]}\npairs/x2_pan.tif,pairs/x2_ms.tif\n")
    specs = expand_specs([str(folder), str(manifest), f"{b.pan}:{b.ms[0]}"])
    assert [Path(s.pan).name for s in specs] == [
        "x1_pan.tif", "x2_pan.tif", "pan.tif", "x2_pan.tif", "pan.tif",
    ]  # fmt: skip
    assert len({s.name for s in specs}) == len(specs), "card names must be distinct"
