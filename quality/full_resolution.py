"""Full-resolution (no-reference) indexes: D_lambda, D_S, QNR, D_lambda_K, HQNR.

quality.md B (Alparone et al., PE&RS 2008; Khan et al., IEEE TGRS 2009; toolbox
``D_lambda.m``, ``D_s.m``, ``D_lambda_K.m``, ``HQNR.m``). No border cut. Block statistics
on non-overlapping 32 x 32 blocks of the PAN grid, block values averaged:

- D_lambda = mean over band pairs i < j of |Q(F_i, F_j) - Q(EXP_i, EXP_j)| (p = 1);
- D_S = mean over bands of |Q(F_b, PAN) - Q(EXP_b, PAN_lp)| (q = 1), with
  PAN_lp = EXP-interpolation of imresize(PAN, 1/ratio);
- QNR = (1 - D_lambda)(1 - D_S);
- D_lambda_K = 1 - Q2n(EXP, MTF(F)), MTF(F) = F filtered with the sensor's MS MTF
  filters at PAN scale (not decimated), EXP the normalising reference;
- HQNR = (1 - D_lambda_K)(1 - D_S).

Here Q(x, y) is the block average of UIQI (see ``uiqi``). The toolbox refuses images
whose sides are not multiples of 32; pansharp evaluates the whole 32 x 32 blocks and
leaves out the trailing partial rows/columns of blocks for D_lambda and D_S (so it
agrees with the toolbox wherever the toolbox is defined), while D_lambda_K follows
Q2n's own rule (mirror extension).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from errors import QualityError
from physics.mtf import MTF_HALF, mtf_filter_bands
from physics.resample import imresize, interp23
from quality.checks import (
    BLOCK,
    as_cube,
    as_plane,
    check_finite,
    check_gains,
    check_min_size,
    check_pair,
    check_pow2_ratio,
    check_ratio,
)
from quality.q2n import q2n
from quality.uiqi import block_uiqi_map


def pan_lowpass(pan: np.ndarray, ratio: int) -> np.ndarray:
    """PAN_lp = interp23(imresize(PAN, 1/ratio)) cropped to the PAN size (quality.md B)."""
    h, w = pan.shape
    lp = interp23(imresize(pan, 1.0 / ratio)[None], ratio)[0]
    return lp[:h, :w]


def pan_lowpass_halo(ratio: int) -> int:
    """Rows/columns of context PAN_lp needs around a tile to be exact, a multiple of 32.

    PAN_lp at a pixel depends on the PAN within about 13 * ratio pixels (imresize's
    widened cubic reaches 2 ratio, the 23-tap cascade about 11 ratio); the MTF filter
    of D_lambda_K needs 20. Rounded up to the block grid.
    """
    reach = max(13 * ratio + 2, MTF_HALF)
    return BLOCK * -(-reach // BLOCK)


def d_lambda_partial(
    fused: np.ndarray, ms_exp: np.ndarray, block: int = BLOCK
) -> tuple[np.ndarray, np.ndarray, int]:
    """Sums over the whole blocks of the arrays of Q(F_i, F_j) and Q(EXP_i, EXP_j).

    Returns (fused sums, EXP sums) over the pairs i < j in row-major order, and the
    number of blocks.
    """
    b = fused.shape[0]
    pairs = [(i, j) for i in range(b) for j in range(i + 1, b)]
    sf = np.array([block_uiqi_map(fused[i], fused[j], block).sum() for i, j in pairs])
    se = np.array([block_uiqi_map(ms_exp[i], ms_exp[j], block).sum() for i, j in pairs])
    count = (fused.shape[1] // block) * (fused.shape[2] // block)
    return sf, se, count


def d_lambda_finish(sum_fused: np.ndarray, sum_exp: np.ndarray, count: int) -> float:
    """D_lambda from the pair sums (p = 1)."""
    return float(np.mean(np.abs(sum_fused / count - sum_exp / count)))


def d_s_partial(
    fused: np.ndarray,
    pan: np.ndarray,
    ms_exp: np.ndarray,
    pan_lp: np.ndarray,
    block: int = BLOCK,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per band, sums over the whole blocks of Q(F_b, PAN) and Q(EXP_b, PAN_lp)."""
    high = np.array([block_uiqi_map(f, pan, block).sum() for f in fused])
    low = np.array([block_uiqi_map(e, pan_lp, block).sum() for e in ms_exp])
    count = (fused.shape[1] // block) * (fused.shape[2] // block)
    return high, low, count


def d_s_finish(sum_high: np.ndarray, sum_low: np.ndarray, count: int) -> float:
    """D_S from the band sums (q = 1)."""
    return float(np.mean(np.abs(sum_high / count - sum_low / count)))


def check_full(
    fused: np.ndarray, ms_exp: np.ndarray, block: int, bands_min: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (fused, EXP) pair on the PAN grid: same shape, one block, enough bands."""
    f, e = check_pair(fused, ms_exp, ("fused", "ms_exp"))
    check_min_size(f.shape[1], f.shape[2], block, "full-resolution indexes (one block)")
    if f.shape[0] < bands_min:
        raise QualityError(
            f"D_lambda compares band pairs and needs at least 2 bands, got {f.shape[0]}"
        )
    return f, e


def check_pan(pan: np.ndarray, shape: tuple[int, int], ratio: int) -> np.ndarray:
    """Validate the PAN: the fused grid's size, sides multiples of ``ratio``, finite."""
    p = as_plane(pan, "pan")
    if p.shape != shape:
        raise QualityError(
            f"pan is {p.shape[0]}x{p.shape[1]} but the fused image is {shape[0]}x{shape[1]}; "
            "the fused image must be on the PAN grid"
        )
    if shape[0] % ratio or shape[1] % ratio:
        raise QualityError(
            f"D_S needs a PAN whose sides are multiples of the ratio {ratio}, got "
            f"{shape[0]}x{shape[1]}; crop the scene to whole MS pixels"
        )
    check_finite(p, "pan")
    return p


def d_lambda(fused: np.ndarray, ms_exp: np.ndarray, block: int = BLOCK) -> float:
    """D_lambda of (B, H, W) ``fused`` against the interpolated MS ``ms_exp``, ideal 0."""
    f, e = check_full(fused, ms_exp, block, bands_min=2)
    return d_lambda_finish(*d_lambda_partial(f, e, block))


def d_s(
    fused: np.ndarray, pan: np.ndarray, ms_exp: np.ndarray, ratio: int, block: int = BLOCK
) -> float:
    """D_S of ``fused`` given the PAN and the interpolated MS ``ms_exp``, ideal 0.

    Needs a power-of-two ``ratio`` (PAN_lp uses the 23-tap interpolator).
    """
    r = check_pow2_ratio(ratio, "D_S")
    f, e = check_full(fused, ms_exp, block)
    p = check_pan(pan, f.shape[1:], r)
    return d_s_finish(*d_s_partial(f, p, e, pan_lowpass(p, r), block))


def qnr(
    fused: np.ndarray, pan: np.ndarray, ms_exp: np.ndarray, ratio: int, block: int = BLOCK
) -> float:
    """QNR = (1 - D_lambda)(1 - D_S), ideal 1."""
    return (1.0 - d_lambda(fused, ms_exp, block)) * (1.0 - d_s(fused, pan, ms_exp, ratio, block))


def d_lambda_k(
    fused: np.ndarray,
    ms_exp: np.ndarray,
    ratio: int,
    ms_gains: Sequence[float] | np.ndarray,
    block: int = BLOCK,
) -> float:
    """D_lambda_K = 1 - Q2n(EXP, MTF(F)) (Khan et al. 2009), ideal 0.

    ``ms_gains`` are the sensor's MS MTF gains at Nyquist (first B used).
    """
    r = check_ratio(ratio, "D_lambda_K")
    f, e = check_full(fused, ms_exp, block)
    gains = check_gains(ms_gains, f.shape[0])
    return 1.0 - q2n(mtf_filter_bands(f, gains, r), e, block)


def hqnr(
    fused: np.ndarray,
    pan: np.ndarray,
    ms_exp: np.ndarray,
    ratio: int,
    ms_gains: Sequence[float] | np.ndarray,
    block: int = BLOCK,
) -> float:
    """HQNR = (1 - D_lambda_K)(1 - D_S), ideal 1."""
    dk = d_lambda_k(fused, ms_exp, ratio, ms_gains, block)
    return (1.0 - dk) * (1.0 - d_s(fused, pan, ms_exp, ratio, block))


def check_ms(ms: np.ndarray, shape: tuple[int, int, int], ratio: int) -> np.ndarray:
    """The original MS must be the fused image's grid divided by ``ratio``."""
    m = as_cube(ms, "ms")
    b, h, w = shape
    want = (b, h // ratio, w // ratio)
    if m.shape != want:
        raise QualityError(
            f"ms has shape {m.shape} but a {b}-band fused image of {h}x{w} at ratio {ratio} "
            f"needs an MS of shape {want}"
        )
    check_finite(m, "ms")
    return m
