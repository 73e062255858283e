"""Deep pansharpening networks; importing this package registers them all, without torch.

Listing models (``pansharp models``, the CLI's ``-m`` choices) must stay cheap, so this
module holds only metadata: every factory imports its torch network module lazily when
called. The networks share one interface (see :mod:`models.deep.common`):
``net(ms_up, pan)`` with ``ms_up`` (N, B, H, W) the MS interpolated onto the PAN grid by
the 23-tap EXP and ``pan`` (N, 1, H, W), both divided by ``2^bit_depth - 1``; the output
is the (N, B, H, W) fused image in the same units.

``halo`` is the receptive-field half-width in PAN pixels of the published
configuration: every layer works on the PAN grid with "same" padding, so it does not
depend on the ratio (the MS interpolation's own support is the engine's business, as for
EXP). ``params`` is the parameter count at the published size for 4 bands (QuickBird,
GaoFen-2, Landsat 8 B2-B5); ``extra["params_8_bands"]`` gives WorldView-2/3's.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from models.deep.method import check_network, prepare_network
from models.registry import ModelInfo, register_model

#: The run settings a single-pass network uses (models.protocol.RUN_OPTIONS).
DEEP_RUN_OPTIONS = (
    "weights", "device", "batch_size", "precision", "tile", "overlap",
    "adapt", "adapt_steps", "adapt_time", "save_adapted",
)  # fmt: skip

NORMALISATION = "divide by 2^bit_depth - 1 (inputs and output in [0, 1]); output scaled back"
LICENCE = "MIT (pansharp implementation of the published architecture; no upstream code)"
DEFAULT_WEIGHTS = "models/deep/weights/<model>_<sensor>.safetensors, or --weights FILE"


def _lazy_factory(module: str, cls: str) -> Callable[..., Any]:
    """Factory importing ``models.deep.<module>`` (and so torch) only when called."""

    def factory(n_bands: int, **kwargs: Any) -> Any:
        mod = importlib.import_module(f"models.deep.{module}")
        return getattr(mod, cls)(n_bands=n_bands, **kwargs)

    factory.__name__ = f"create_{module}"
    factory.__doc__ = f"Build models.deep.{module}.{cls}(n_bands, **kwargs) (imports torch)."
    return factory


def _weights_finder(model: str) -> Callable[[], list[dict[str, Any]]]:
    """Torch-free lister of the shipped weights of ``model`` (registry ``available_weights``)."""

    def finder() -> list[dict[str, Any]]:
        from models.deep.card import list_default_weights

        return list_default_weights(model)

    return finder


def _register(
    name: str,
    cls: str,
    title: str,
    reference: str,
    halo: int | Callable[[int], int],
    params: int,
    params_8: int,
    module: str | None = None,
    **extra: Any,
) -> None:
    info = ModelInfo(
        name=name,
        title=title,
        family="deep",
        reference=reference,
        halo=halo if callable(halo) else (lambda ratio, _h=halo: _h),
        min_bands=1,
        max_bands=None,
        needs_weights=True,
        trainable=True,
        run_options=DEEP_RUN_OPTIONS,
        torch=True,
        normalisation=NORMALISATION,
        licence=LICENCE,
        params=params,
        extra={
            "params_at": "4 bands, published size",
            "params_8_bands": params_8,
            "default_weights": DEFAULT_WEIGHTS,
            "global_context": False,
            "inputs": "ms_up = interp23(MS) on the PAN grid (N, B, H, W), pan (N, 1, H, W)",
            "weights_finder": _weights_finder(name),
            **extra,
        },
    )
    register_model(info, check=check_network, prepare=prepare_network)(
        _lazy_factory(module or name, cls)
    )


_register(
    "pnn",
    "PNN",
    "PNN (CNN pansharpening, 3 layers 9-5-5)",
    "Masi, Cozzolino, Verdoliva & Scarpa, Remote Sensing 8(7):594, 2016",
    halo=8,  # 9x9, 5x5, 5x5 convs: 4 + 2 + 2
    params=80_420,
    params_8=104_360,
    notes="'same' padding instead of valid convolutions; no radiometric-index inputs",
)
_register(
    "pannet",
    "PanNet",
    "PanNet (high-pass inputs, ResNet, MS skip)",
    "Yang, Fu, Hu, Huang, Ding & Paisley, ICCV 2017",
    halo=12,  # 5x5 box high-pass (2) + 10 3x3 convs (10)
    params=76_612,
    params_8=78_920,
    notes="high-pass taken on ms_up (EXP) instead of a learned ratio-4 deconvolution",
)
_register(
    "dicnn",
    "DiCNN",
    "DiCNN1 (detail-injection CNN)",
    "He, Rao, Li, Chanussot, Plaza, Zhu & Li, IEEE JSTARS 12(4):1188-1204, 2019",
    halo=3,  # 3 3x3 convs
    params=42_180,
    params_8=46_792,
)
_register(
    "fusionnet",
    "FusionNet",
    "FusionNet (PAN - MS_up details, 4 ResBlocks)",
    "Deng, Vivone, Jin & Chanussot, IEEE TGRS 59(8):6995-7010, 2021",
    halo=10,  # 10 3x3 convs
    params=76_324,
    params_8=78_632,
)
_register(
    "lagnet",
    "LAGNet",
    "LAGNet (LAGConv: local-context adaptive kernels, global harmonic bias)",
    "Jin, Zhang, Jiang, Vivone & Deng, AAAI 2022",
    halo=12,  # 12 3x3 LAGConvs; the global harmonic bias also sees the whole tile
    params=148_457,
    params_8=151_397,
    global_context=True,
    global_context_note=(
        "the global harmonic bias pools over the whole tile: tiled output differs "
        "slightly from a whole-image run; global_bias=False makes it strictly local"
    ),
)
_register(
    "otpnet",
    "OTPNet",
    "OTPNet (Douglas-Rachford unfolding, RK4 proximal networks, real D and S operators)",
    "Yu, Li, Liu & Sun, AAAI 2025",
    # 3 iterations x (D^T D: 4 ratio, prox head and tail: 2, one RK4 block: 8)
    halo=lambda ratio: 3 * (4 * int(ratio) + 10),
    params=126_786,
    params_8=140_634,
    physics=True,
    # an upper bound: the D^T D hops of the chain can only pass through MS samples, so
    # the reach measured at ratio 4 is 74 (tests/test_deep_models.py)
    halo_slack=4,
    notes=(
        "3 iterations, 32 maps, one RK4 block per proximal network (widths not in the "
        "paper); D = the sensor's MTF blur cut to (4r+1)^2 taps and decimation on the MS "
        "lattice, S = the sensor's band weights, both from the weights card"
    ),
)
_register(
    "premix-b",
    "PreMixB",
    "PreMix-B (EWFM feature mixing, per-pixel 3x3 predictive filtering)",
    "Cui, Liu, Ma, Chen, Xu & Guo, ISPRS J. Photogramm. Remote Sens., 2025",
    module="premix",
    halo=10,  # head 1 + 2 EWFM layers x 3 + kernel predictor 3 (the 3x3 filter adds 1)
    params=152_650,
    params_8=175_762,
    paper_params=151_000,  # Table 3: 0.151 M (MACs 9.909 G at 256 x 256 x 4)
    notes="2 EWFM layers, 32 maps, 3x3 kernels (authors' code), hard mixing (eq. 16)",
)
_register(
    "premix-h",
    "PreMixH",
    "PreMix-H (3 branches x 3 scales of progressive predictive filtering)",
    "Cui, Liu, Ma, Chen, Xu & Guo, ISPRS J. Photogramm. Remote Sens., 2025",
    module="premix",
    halo=39,  # nine chained units (PreMixH.halo); patches on a 4-pixel lattice
    params=957_681,
    params_8=1_165_689,
    paper_params=865_000,  # Table 3: 0.865 M (MACs 35.03 G at 256 x 256 x 4)
    notes=(
        "global histogram equalisation from scene-wide histograms instead of CLAHE; "
        "every stage filters the original PAN; 1 EWFM layer per unit, 32 maps, 3x3 kernels"
    ),
)


def _register_diffusion() -> None:
    """NODiff and KSDiff: denoisers sampled on grid windows (models.iterative.windowed)."""
    from models.iterative.windowed import register_windowed

    common = {
        "weights_finder": _weights_finder("nodiff"),
        "default_weights": DEFAULT_WEIGHTS,
        "inputs": "ms_up = interp23(MS) on the PAN grid (N, B, H, W), pan (N, 1, H, W)",
        "stages": 2,
        "global_context": False,
    }
    register_windowed(
        ModelInfo(
            name="nodiff",
            title="NODiff (FNO residual diffusion, two stages)",
            family="diffusion",
            reference="Hou, Ran, Chen, Chen, Cong, Li & Deng, AAAI 2026",
            halo=lambda ratio: 64,  # the sampler's window (NODiff.window)
            normalisation=NORMALISATION,
            licence=LICENCE,
            params=3_180_544,  # all of the stage-2 network, 4 bands (the frozen prior too)
            extra={
                **common,
                "default_steps": 10,
                # training sets the gain from the data's residual spread; a network
                # trained on the scene alone (--adapt, zero-shot) starts at unit gain
                "zero_shot_kwargs": {"residual_gain": 1.0},
                "params_stage2_trainable": 514_284,
                "notes": (
                    "8 FNO layers, 12 modes, width 24; epsilon prediction, cosine T=1000; "
                    "sampled on 64-pixel grid windows blended over 16-pixel ramps"
                ),
            },
        ),
        _lazy_factory("nodiff", "NODiff"),
    )
    register_windowed(
        ModelInfo(
            name="ksdiff",
            title="KSDiff (kernel-space latent diffusion)",
            family="diffusion",
            reference="Jin, Cao & Deng, Kernel Space Diffusion Model for Efficient Remote "
            "Sensing Pansharpening, 2025",
            halo=lambda ratio: 64,  # the sampler's window (KSDiff.window)
            normalisation=NORMALISATION,
            licence=LICENCE,
            params=409_400,  # all of the stage-2 network, 4 bands (the frozen PLFE_1 too)
            extra={
                **common,
                "weights_finder": _weights_finder("ksdiff"),
                # the quality-vs-steps curve (models/deep/weights/README.md): Landsat 7 Q2n
                # 0.8949 / 0.8952 / 0.8953 at 1 / 2 / 5 steps, then flat to 50
                "default_steps": 5,
                "params_stage2_trainable": 272_664,
                "notes": (
                    "PanNeXt-U width 32 with 4 modulated 7x7 ConvNeXt blocks, 16 latent "
                    "tokens of 32, Tucker ranks (1, 4, 2, 2); x0 prediction, cosine T=1000; "
                    "64-pixel grid windows blended over 8-pixel ramps"
                ),
            },
        ),
        _lazy_factory("ksdiff", "KSDiff"),
    )


_register_diffusion()
