"""Quality assessment of pansharpened images: the protocol of quality.md.

Whole-image indexes on (B, H, W) float64 raw DN, the two protocol drivers, and
streaming accumulators for scenes larger than memory (same numbers).
Reference: Vivone et al., "A new benchmark based on recent advances in multispectral
pansharpening", IEEE GRSM 2021, and its MATLAB toolbox.
"""

from __future__ import annotations

from quality.accumulators import (
    REDUCED_HALO_AFTER,
    REDUCED_HALO_BEFORE,
    FullAccumulator,
    ReducedAccumulator,
    TileWindow,
    full_tiles,
    reduced_tiles,
    tile_windows,
)
from quality.ergas import ergas
from quality.full_resolution import (
    d_lambda,
    d_lambda_k,
    d_s,
    hqnr,
    pan_lowpass,
    pan_lowpass_halo,
    qnr,
)
from quality.protocols import (
    CUT_LEADING,
    CUT_TRAILING,
    FULL_KEYS,
    HIGHER_IS_BETTER,
    IDEAL,
    REDUCED_KEYS,
    border_cut,
    full_resolution_indexes,
    is_better,
    reduced_resolution_indexes,
)
from quality.psnr import psnr
from quality.q2n import Q2nGrid, q2n, round_uint16
from quality.sam import sam
from quality.scc import scc
from quality.ssim import ssim
from quality.uiqi import block_uiqi_map, q_avg, uiqi

__all__ = [
    "CUT_LEADING",
    "CUT_TRAILING",
    "FULL_KEYS",
    "HIGHER_IS_BETTER",
    "IDEAL",
    "REDUCED_HALO_AFTER",
    "REDUCED_HALO_BEFORE",
    "REDUCED_KEYS",
    "FullAccumulator",
    "Q2nGrid",
    "ReducedAccumulator",
    "TileWindow",
    "block_uiqi_map",
    "border_cut",
    "d_lambda",
    "d_lambda_k",
    "d_s",
    "ergas",
    "full_resolution_indexes",
    "full_tiles",
    "hqnr",
    "is_better",
    "pan_lowpass",
    "pan_lowpass_halo",
    "psnr",
    "q2n",
    "q_avg",
    "qnr",
    "reduced_resolution_indexes",
    "reduced_tiles",
    "round_uint16",
    "sam",
    "scc",
    "ssim",
    "tile_windows",
    "uiqi",
]
