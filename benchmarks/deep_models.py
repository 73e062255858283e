"""Every registered deep network side by side: its size and what ``pansharp fuse`` costs.

Why: the deep models differ by orders of magnitude in arithmetic, and a user choosing
one on a CPU needs the price next to the network. Papers quote parameters and MACs, so
those are measured here in the papers' own terms, and the end-to-end cost is measured
the way a user pays it (a whole ``pansharp fuse`` command). One run covers every name in
registered torch network (registry ``info.torch``), so networks registered later are
included.

1. Size, per model at its published configuration for 4 bands (``create_model(name,
   n_bands=4)``): trainable parameters (``models.deep.common.count_params``) and the
   multiply-accumulates of one forward pass at 256 x 256 x 4, batch 1, the condition of
   PreMix's Table 3 (``/work/shared/papers/001_4ab9252742f7ffea.txt``). ``count_macs``
   counts with forward hooks: nn.Conv2d gives output elements x in_channels/groups x
   kh x kw, nn.Linear output elements x in_features, and LAGConv (whose kernel is a
   parameter used through ``torch.mm``, not a Conv2d) output elements x (c_in k^2 + k^2):
   its static kernel as a dense k x k convolution plus the k^2 modulated tap products
   (eq. 3-4 of LAGConv). Not counted: biases, element-wise work (activations, residual
   additions, masks, mixing), pooling and any functional kernel (``F.conv2d`` on a
   tensor, e.g. OTPNet's MTF blur, or predictive filtering built from unfold and
   products) that no module exposes. A second column cross-checks with torch's
   ``FlopCounterMode`` (FLOPs / 2 of every convolution and matrix product executed,
   functional ones included, element-wise still excluded). Next to them: the figures the
   papers in /work/shared/papers print (see ``PAPER``; only numbers found in their text).
2. CPU cost of ``pansharp fuse`` end to end on one synthetic Landsat-8-like scene (4
   bands, ratio 2, uint16, 16-bit DN, written by ``scenes.write_pair``), each model with
   its shipped ``models/deep/weights/<model>_landsat8.safetensors`` (a model without
   that file is skipped and listed), ``--sensor landsat8 --device cpu``, in a subprocess
   through ``measure.run_measured``: wall seconds and the child's peak RSS from its own
   ``wait4``. run_measured returns no CPU times, so CPU seconds (user + sys) are this
   process's ``RUSAGE_CHILDREN`` growth over the run (the launcher waits for the command,
   so the command's usage is folded into the launcher's, then into ours), less the
   launcher's own, measured on ``/bin/true``. Per megapixel = per million PAN (output)
   pixels; each also as a ratio to FusionNet's. Models run round-robin ``--repeat``
   times after one untimed warm-up run; the lowest CPU and wall time and the highest peak
   RSS are kept (other load only ever slows a run down).

    python benchmarks/deep_models.py [--size 1024] [--repeat 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
from measure import compile_sources, run_measured  # noqa: E402
from scenes import write_pair  # noqa: E402

SENSOR = "landsat8"
BIT_DEPTH = 16
RATIO = 2  # Landsat 8 OLI: PAN 15 m, MS 30 m
MAC_SIDE = 256  # PreMix Table 3: 4 bands, 256 x 256, batch 1
REFERENCE = "fusionnet"
WEIGHTS = ROOT / "models" / "deep" / "weights"

#: Figures printed in /work/shared/papers, by model. Searched: 000 (OTPNet) gives its
#: complexity only as a plot (Fig. 4, right), no numbers in the text; 003 (KSDiff) and
#: 004 (NODiff) give runtimes and a FLOPs plot (004 Fig. 2), none for these networks;
#: the papers of PNN, PanNet, DiCNN, FusionNet and LAGNet are not in the folder.
PAPER: dict[str, dict[str, Any]] = {
    "premix-b": {
        "params_m": 0.151,
        "macs_g": 9.909,
        "source": "001_4ab9252742f7ffea.txt, Table 3 (4 bands, 256x256, batch 1)",
    },
    "premix-h": {
        "params_m": 0.865,
        "macs_g": 35.03,
        "source": "001_4ab9252742f7ffea.txt, Table 3 (4 bands, 256x256, batch 1)",
    },
}

MACS_NOTE = (
    "GMACs: forward hooks at 256x256x4, batch 1 - nn.Conv2d (out elements x in/groups x kh "
    "x kw), nn.Linear (out elements x in_features), LAGConv (out elements x (c_in k^2 + "
    "k^2): static kernel as a dense conv + modulated taps); biases, element-wise ops, "
    "pooling and functional kernels no module exposes (F.conv2d on tensors, predictive "
    "filtering from unfold/products) are NOT counted. aten: torch FlopCounterMode / 2, "
    "every conv and matmul executed, functional ones included, element-wise excluded. "
    "Diffusion networks (nodiff, ksdiff): one DDIM step of generate on one 256^2 window "
    "(condition, one denoiser call, output); each further step adds a denoiser call, and "
    "fuse runs overlapping 64^2 (ksdiff) or larger windows."
)


# --- MACs -------------------------------------------------------------------------------

Counter = Callable[[Any, tuple[Any, ...], Any], int]


def _conv2d_macs(m: Any, inputs: tuple[Any, ...], out: Any) -> int:
    kh, kw = m.kernel_size
    return out.numel() * (m.in_channels // m.groups) * kh * kw


def _linear_macs(m: Any, inputs: tuple[Any, ...], out: Any) -> int:
    return out.numel() * m.in_features


def _lagconv_macs(m: Any, inputs: tuple[Any, ...], out: Any) -> int:
    """Static kernel products (c_in k^2 per output element, as a dense conv; the module
    runs them as one GEMM on the padded grid) plus the k^2 modulated tap products."""
    k2 = m.k * m.k
    return out.numel() * (m.c_in * k2 + k2)


#: Modules with their own count, by "module.QualName" (so nothing is imported to match);
#: their sub-modules (LAGConv's context and harmonic branches) are counted by their own.
CUSTOM: dict[str, Counter] = {"models.deep.lagnet.LAGConv": _lagconv_macs}


def _counter_for(m: Any) -> Counter | None:
    from torch import nn

    if isinstance(m, nn.Conv2d):
        return _conv2d_macs
    if isinstance(m, nn.Linear):
        return _linear_macs
    return CUSTOM.get(f"{type(m).__module__}.{type(m).__qualname__}")


@contextlib.contextmanager
def _hooked(model: Any) -> Iterator[list[int]]:
    """Forward hooks adding each counted module's MACs to the yielded one-item list."""
    total = [0]
    handles = []
    for m in model.modules():
        fn = _counter_for(m)
        if fn is not None:

            def hook(mod: Any, args: tuple[Any, ...], out: Any, _fn: Counter = fn) -> None:
                total[0] += int(_fn(mod, args, out))

            handles.append(m.register_forward_hook(hook))
    try:
        yield total
    finally:
        for h in handles:
            h.remove()


def count_macs(model: Any, inputs: Sequence[Any]) -> int:
    """Multiply-accumulates of ``model(*inputs)`` from forward hooks (see the module doc:
    Conv2d, Linear and LAGConv; element-wise work and functional kernels not counted)."""
    import torch

    with _hooked(model) as total, torch.no_grad():
        one_pass(model, inputs)
    return total[0]


def mac_inputs(model: Any, n_bands: int = 4, side: int = MAC_SIDE) -> list[Any]:
    """Seeded inputs of one forward pass: ms_up, pan (and lr when the network takes it)."""
    import torch

    g = torch.Generator().manual_seed(0)
    ms_up = torch.rand(1, n_bands, side, side, generator=g)
    pan = torch.rand(1, 1, side, side, generator=g)
    if not getattr(model, "needs_lowres", False):
        return [ms_up, pan]
    r = int(model.config.get("ratio", 4))
    m = math.ceil(side / r)
    return [ms_up, pan, torch.rand(1, n_bands, m, m, generator=g)]


def one_pass(model: Any, inputs: Sequence[Any]) -> Any:
    """One forward pass as fuse runs it. A diffusion network's ``forward`` is a training
    stage (KSDiff's needs the reference), so it runs ``generate`` with a one-step DDIM
    scheduler of its own config: its condition, one denoiser call and the output map
    (every further step adds one denoiser call). The noise is seeded, like the inputs."""
    import torch

    if not hasattr(model, "generate"):
        return model(*inputs)
    from models.iterative.windowed import scheduler_for

    if model.config.get("residual_gain") == 0.0:  # NODiff's, set by training: any value
        model.config["residual_gain"] = 1.0  # scales the output, no arithmetic counted
    sched, _ = scheduler_for(dict(model.config), 1)
    ms_up = inputs[0]
    n, _, h, w = ms_up.shape

    def noise(step: int, channels: int, spatial: bool = True) -> Any:
        g = torch.Generator().manual_seed(int(step))
        return torch.randn((n, channels, h, w) if spatial else (n, channels), generator=g)

    return model.generate(*inputs[:2], sched, noise)


def model_size(name: str, n_bands: int = 4) -> dict[str, Any]:
    """Parameters, hook MACs and FlopCounterMode MACs of one forward pass (one pass)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from models.deep.common import count_params
    from models.registry import create_model, get_entry

    torch.manual_seed(0)
    model = create_model(name, n_bands=n_bands).eval()
    inputs = mac_inputs(model, n_bands)
    bins = int(getattr(model, "equalisation_bins", 0) or 0)
    if bins > 0:  # scene-wide histograms, as fuse's prepare sets them (here: the inputs')
        from models.deep.method import value_histograms

        hists = value_histograms(inputs[0][0].numpy(), inputs[1][0, 0].numpy(), None, bins)
        model.set_equalisation(*hists)
    with _hooked(model) as total, torch.no_grad(), FlopCounterMode(display=False) as fc:
        one_pass(model, inputs)
    return {
        "params": count_params(model),
        "registry_params": get_entry(name).info.params,
        "macs": total[0],
        "macs_aten": fc.get_total_flops() // 2,
        "mac_inputs": [list(t.shape) for t in inputs],
    }


# --- fuse cost --------------------------------------------------------------------------


def landsat8_truth(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(4, h, n) DN cube, Landsat-8-like in 16 bits: blue/green/red ~7-10k, NIR ~15k,
    fields with sharp borders, smooth relief and sensor-like noise (seeded by strip)."""
    rng = np.random.default_rng(int(rows[0]))
    r, c = rows[:, None], cols[None, :]
    relief = np.sin(0.013 * c) * np.cos(0.009 * r) + 0.5 * np.sin(0.041 * (c + r))
    fields = ((np.floor(c / 37) * 7 + np.floor(r / 53) * 13) % 5) / 4.0  # 0..1 patches
    base = np.array([9000.0, 8500.0, 8000.0, 15000.0])[:, None, None]
    gain = np.array([600.0, 700.0, 900.0, 2500.0])[:, None, None]
    veg = np.array([-300.0, 200.0, -800.0, 4000.0])[:, None, None]
    cube = base + gain * relief[None] + veg * fields[None]
    return cube + rng.normal(0.0, 40.0, cube.shape)


def children_cpu() -> float:
    """User + system CPU seconds of every waited-for descendant of this process."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measured(cmd: list[str]) -> dict[str, float]:
    """run_measured plus the command's CPU seconds (launcher included, see module doc)."""
    c0 = children_cpu()
    m = run_measured(cmd, cwd=ROOT)
    out = {"cpu": children_cpu() - c0, "wall": m.seconds, "rss_mb": m.peak_rss_mb}
    lines = m.stdout.strip().splitlines()
    with contextlib.suppress(ValueError, IndexError):
        out["fuse_seconds"] = float(json.loads(lines[-1])["seconds"])
    return out


def launcher_cpu(repeat: int = 3) -> float:
    """The launcher's own CPU seconds (best of ``repeat`` runs of /bin/true)."""
    true = "/bin/true" if Path("/bin/true").exists() else "true"
    return min(measured([true])["cpu"] for _ in range(repeat))


def fuse_command(name: str, pan: Path, ms: Path, out: Path, threads: int) -> list[str]:
    cmd = [sys.executable, "-m", "pansharp_cli", "fuse", str(pan), str(ms), "-m", name]
    cmd += ["--sensor", SENSOR, "--bit-depth", str(BIT_DEPTH), "--device", "cpu"]
    cmd += ["--threads", str(threads), "-o", str(out), "--overwrite", "--json", "-q"]
    return cmd


def fuse_costs(
    names: list[str], size: int, folder: Path, threads: int, repeat: int
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per model: best CPU s, wall s, peak RSS over ``repeat`` round-robin fuse runs."""
    pan, ms = write_pair(folder, size, landsat8_truth, bands=4, ratio=RATIO, name="l8_")
    out = folder / "deep_models_fused.tif"
    results: dict[str, dict[str, Any]] = {}
    runnable = []
    for name in names:
        w = WEIGHTS / f"{name}_{SENSOR}.safetensors"
        if w.exists():
            runnable.append(name)
        else:
            results[name] = {"skipped": f"no {w.relative_to(ROOT)}"}
    overhead = launcher_cpu()
    if runnable:  # untimed: page cache, bytecode, first-run effects
        with contextlib.suppress(SystemExit):
            measured(fuse_command(runnable[0], pan, ms, out, threads))
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in runnable}
    for _ in range(repeat):
        for name in runnable:
            if "failed" in results.get(name, {}):
                continue
            try:
                runs[name].append(measured(fuse_command(name, pan, ms, out, threads)))
            except SystemExit as e:  # run_measured ends on a failing command
                results[name] = {"failed": str(e).strip().splitlines()[-1][:300]}
    mpx = size * size / 1e6
    for name, rs in runs.items():
        if not rs:
            continue
        cpu = max(0.0, min(r["cpu"] for r in rs) - overhead)
        wall = min(r["wall"] for r in rs)
        fuse_s = [r["fuse_seconds"] for r in rs if "fuse_seconds" in r]
        results[name] = {
            "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3),
            "cpu_s_per_mp": round(cpu / mpx, 3),
            "wall_s_per_mp": round(wall / mpx, 3),
            "peak_rss_mb": round(max(r["rss_mb"] for r in rs), 1),
            "fuse_seconds": round(min(fuse_s), 3) if fuse_s else None,
            "runs": rs,
        }
    ref = results.get(REFERENCE, {})
    for res in results.values():
        for key in ("cpu_s_per_mp", "wall_s_per_mp", "peak_rss_mb"):
            if key in res:
                res[f"{key}_vs_{REFERENCE}"] = (
                    round(res[key] / ref[key], 2) if ref.get(key) else None
                )
    scene = {
        "pan": str(pan),
        "ms": str(ms),
        "size": size,
        "megapixels": mpx,
        "ratio": RATIO,
        "bands": 4,
        "sensor": SENSOR,
        "bit_depth": BIT_DEPTH,
        "threads": threads,
        "repeat": repeat,
        "launcher_cpu_s": round(overhead, 4),
        "command": " ".join(fuse_command("<model>", pan, ms, out, threads)),
    }
    return results, scene


# --- report -----------------------------------------------------------------------------


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'model':<10} {'params':>9} {'paper':>7} {'GMACs':>8} {'aten':>8} {'paper':>7} "
        f"{'CPU s/MP':>9} {'xFN':>5} {'wall s/MP':>9} {'xFN':>5} {'RSS MB':>7} {'xFN':>5}"
    )
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        paper = PAPER.get(name, {})
        pp = f"{paper['params_m']:.3f}M" if paper else "-"
        pm = f"{paper['macs_g']:.3f}" if paper else "-"
        f = r.get("fuse", {})
        size = r.get("size", {})
        macs = size.get("macs")
        aten = size.get("macs_aten")
        lines.append(
            f"{name:<10} {_fmt(size.get('params'), ','):>9} {pp:>7} "
            f"{_fmt(macs and macs / 1e9, '.3f'):>8} {_fmt(aten and aten / 1e9, '.3f'):>8} "
            f"{pm:>7} {_fmt(f.get('cpu_s_per_mp'), '.2f'):>9} "
            f"{_fmt(f.get('cpu_s_per_mp_vs_fusionnet'), '.2f'):>5} "
            f"{_fmt(f.get('wall_s_per_mp'), '.2f'):>9} "
            f"{_fmt(f.get('wall_s_per_mp_vs_fusionnet'), '.2f'):>5} "
            f"{_fmt(f.get('peak_rss_mb'), '.0f'):>7} "
            f"{_fmt(f.get('peak_rss_mb_vs_fusionnet'), '.2f'):>5}"
        )
    return "\n".join(lines)


def notes(rows: dict[str, dict[str, Any]], scene: dict[str, Any]) -> list[str]:
    out = [
        MACS_NOTE,
        f"params: count_params at 4 bands, published size; paper columns: {PAPER_NOTE}.",
        f"fuse: {scene['size']}x{scene['size']} PAN ({scene['megapixels']:.3f} MP), 4-band "
        f"ratio-{RATIO} uint16 {BIT_DEPTH}-bit, --sensor {SENSOR} --device cpu --threads "
        f"{scene['threads']}, best of {scene['repeat']} after a warm-up; CPU = user+sys of "
        f"the child (launcher's {scene['launcher_cpu_s']} s subtracted); xFN = / FusionNet.",
        f"command: {scene['command']}",
    ]
    for name, r in rows.items():
        for key in ("skipped", "failed"):
            if key in r.get("fuse", {}):
                out.append(f"{name}: fuse {key}: {r['fuse'][key]}")
        if "error" in r.get("size", {}):
            out.append(f"{name}: size not measured: {r['size']['error']}")
        size = r.get("size", {})
        if size.get("registry_params") not in (None, size.get("params")):
            out.append(
                f"{name}: registry says {size['registry_params']:,} params, "
                f"count_params {size['params']:,}"
            )
    return out


PAPER_NOTE = "; ".join(f"{k}: {v['source']}" for k, v in PAPER.items()) + (
    "; no other figures in /work/shared/papers (see PAPER in this script)"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="PAN side in pixels (default 1024)")
    ap.add_argument("--repeat", type=int, default=1, help="fuse runs per model (best kept)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--workdir", type=Path, default=None, help="where the scene is cached")
    ap.add_argument("--models", default=None, help="comma-separated subset (default: all)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.size % RATIO or args.size <= 0:
        ap.error(f"--size must be a positive multiple of the ratio ({RATIO})")

    from models.registry import get_entry, model_names

    names = [n for n in model_names() if get_entry(n).info.torch]
    if args.models:
        names = [n for n in names if n in args.models.split(",")]
    compile_sources()  # as installed: bytecode caches present (see measure.py)
    folder = args.workdir or Path(tempfile.gettempdir()) / "pansharp-bench"
    folder.mkdir(parents=True, exist_ok=True)

    rows: dict[str, dict[str, Any]] = {n: {} for n in names}
    fuse, scene = fuse_costs(names, args.size, folder, args.threads, max(1, args.repeat))
    for name in names:  # after the fuse runs: this process holds torch only from here
        try:
            rows[name]["size"] = model_size(name)
        except Exception as e:  # a network still being written must not hide the others
            rows[name]["size"] = {"error": f"{type(e).__name__}: {e}"[:300]}
            traceback.print_exc(file=sys.stderr)
        rows[name]["fuse"] = fuse.get(name, {})
        if name in PAPER:
            rows[name]["paper"] = PAPER[name]
    print(table(rows))
    for line in notes(rows, scene):
        print(line)
    if args.json:
        report = {"scene": scene, "macs_note": MACS_NOTE, "models": rows}
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
