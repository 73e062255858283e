"""Q2n (Q4 for 4 bands, Q8 for 8): the hypercomplex quality index on 32 x 32 blocks.

quality.md A.6 "Q2n" (Garzelli & Nencini, IEEE GRSL 2009; toolbox ``q2n.m``,
``onions_quality.m``): blocks of 32 with shift 32; sides that are not multiples of 32
are extended at the bottom/right by mirroring (rows N-1, N-2, ...); both images are
rounded to uint16 (half away from zero, saturated); the bands are padded with zero
bands to a power of two; in each block every band of both images is standardised with
the reference block band's mean and (N-1) std and shifted by +1 (std 0 -> eps; a
reference mean of exactly 0 only shifts the fused band); then

    Q = 4 |s_gf| |m_g| |m_f| / ((s_g^2 + s_f^2)(|m_g|^2 + |m_f|^2)),
    s_gf = n/(n-1) (E[g conj(f)] - m_g conj(m_f))   (hypercomplex products),

or 2 |m_g||m_f| / (|m_g|^2 + |m_f|^2) when s_g^2 + s_f^2 = 0. Q2n = mean over blocks.

How it is computed here. The hypercomplex product is bilinear, so s_gf is the
structure tensor ``conj_product_tensor`` contracted with the covariances of the
standardised bands, and those are the raw block covariances scaled per band. Every
block therefore reduces to a few additive sums of the uint16-rounded values: S_g, S_f,
S_gg, S_ff per band and S_{g_i f_j} per band pair. These sums are integers below 2^53,
so float64 holds them exactly whatever the order of summation: a block assembled from
any number of tiles (and from the mirrored copies of its pixels) has bit-identical
statistics to the whole-image computation. :class:`Q2nGrid` keeps, per block, either
its final value or (while some of its pixels have not arrived) its sums.
"""

from __future__ import annotations

import numpy as np

from errors import QualityError
from quality.checks import BLOCK, check_min_size, check_pair
from quality.hypercomplex import conj_product_tensor, next_pow2

UINT16_MAX = 65535.0


def round_uint16(x: np.ndarray) -> np.ndarray:
    """MATLAB ``uint16(x)``: round half away from zero, saturate to [0, 65535].

    Computed as floor(x) + (frac >= 0.5), exact for every float64 (x + 0.5 is not:
    0.49999999999999994 + 0.5 rounds to 1.0).
    """
    fl = np.floor(x)
    r = fl + ((x - fl) >= 0.5)
    return np.clip(r, 0.0, UINT16_MAX)


def _extended_axis(start: int, length: int, n: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions on the mirror-extended axis of the samples start .. start+length-1.

    The axis of n samples is extended to block * ceil(n / block) by appending samples
    n-1, n-2, ... (quality.md): sample r also appears at 2n - 1 - r when r >= n - ext.
    Returns (local source index, extended position), sorted by extended position.
    """
    ext = block * -(-n // block) - n
    local = np.arange(length)
    pos = start + local
    mirrored = local[pos >= n - ext][::-1]
    src = np.concatenate([local, mirrored])
    dst = np.concatenate([pos, 2 * n - 1 - (start + mirrored)])
    return src, dst


def q2n_block_values(stats: np.ndarray, bands: int, block: int = BLOCK) -> np.ndarray:
    """Q2n value of each block from its sums (rows of ``stats``, layout of ``Q2nGrid``).

    ``stats[:, 0]`` is the pixel count (block^2 once complete), then S_g, S_f, S_gg,
    S_ff (``bands`` each) and S_gf (bands x bands, row = reference band).
    """
    b = bands
    p = next_pow2(b)
    k = stats.shape[0]
    n = float(block * block)
    nn1 = n * (n - 1.0)
    sg, sf = stats[:, 1 : 1 + b], stats[:, 1 + b : 1 + 2 * b]
    sgg, sff = stats[:, 1 + 2 * b : 1 + 3 * b], stats[:, 1 + 3 * b : 1 + 4 * b]
    sgf = stats[:, 1 + 4 * b :].reshape(k, b, b)
    # n * variance numerators: exact integers (all terms < 2^53)
    vg = n * sgg - sg * sg
    vf = n * sff - sf * sf
    cv = n * sgf - sg[:, :, None] * sf[:, None, :]
    mean_g = sg / n
    std_g = np.sqrt(vg / nn1)
    std_g = np.where(vg == 0, np.finfo(np.float64).eps, std_g)
    scale_g = 1.0 / std_g
    zero_mean = sg == 0
    scale_f = np.where(zero_mean, 1.0, scale_g)
    # standardised means: the reference is exactly 1 per band; padded bands are 0 + 1
    m_f = np.where(zero_mean, sf / n, (sf / n - mean_g) * scale_g) + 1.0
    var_g = scale_g * scale_g * vg / nn1
    var_f = scale_f * scale_f * vf / nn1
    cov = np.zeros((k, p, p))
    cov[:, :b, :b] = scale_g[:, :, None] * scale_f[:, None, :] * cv / nn1
    mf_full = np.ones((k, p))
    mf_full[:, :b] = m_f
    s_gf = np.einsum("kij,ijm->km", cov, conj_product_tensor(p))
    norm_s = np.sqrt(np.sum(s_gf * s_gf, axis=1))
    norm_mg2 = float(p)  # |m_g|^2: p components equal to 1
    norm_mf2 = np.sum(mf_full * mf_full, axis=1)
    mean_bias = 2.0 * np.sqrt(norm_mg2 * norm_mf2) / (norm_mg2 + norm_mf2)
    spread = var_g.sum(axis=1) + var_f.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        general = norm_s * mean_bias * 2.0 / spread
    return np.where(spread == 0, mean_bias, general)


class Q2nGrid:
    """Q2n of a rows x cols image fed in pieces: per-block sums, then per-block values.

    ``add`` takes any rectangle of the image (each pixel exactly once overall); the
    pixel's mirrored copies in the extended border are accounted for automatically.
    Memory: one float per block plus the sums of blocks still incomplete.
    """

    def __init__(self, rows: int, cols: int, bands: int, block: int = BLOCK) -> None:
        check_min_size(rows, cols, block, "Q2n (one block)")
        self.rows, self.cols, self.bands, self.block = rows, cols, bands, block
        self.n_rows = -(-rows // block)
        self.n_cols = -(-cols // block)
        self.values = np.full((self.n_rows, self.n_cols), np.nan)
        self._pending: dict[tuple[int, int], np.ndarray] = {}
        self._width = 1 + 4 * bands + bands * bands

    def add(self, fused: np.ndarray, ref: np.ndarray, row0: int, col0: int) -> None:
        """Add the pixels rows row0.., cols col0.. of (B, h, w) ``fused`` and ``ref``.

        ``ref`` is the normalising reference (GT at reduced resolution, EXP for
        D_lambda_K). Values are raw DN; the uint16 rounding happens here.
        """
        b, h, w = fused.shape
        if row0 < 0 or col0 < 0 or row0 + h > self.rows or col0 + w > self.cols:
            raise QualityError(
                f"Q2n piece rows {row0}..{row0 + h}, cols {col0}..{col0 + w} falls outside "
                f"the {self.rows}x{self.cols} image"
            )
        rs, rd = _extended_axis(row0, h, self.rows, self.block)
        cs, cd = _extended_axis(col0, w, self.cols, self.block)
        f = round_uint16(fused)[:, rs][:, :, cs]
        g = round_uint16(ref)[:, rs][:, :, cs]
        r_id, r_start = np.unique(rd // self.block, return_index=True)
        c_id, c_start = np.unique(cd // self.block, return_index=True)

        def bsum(x: np.ndarray) -> np.ndarray:
            return np.add.reduceat(np.add.reduceat(x, r_start, axis=-2), c_start, axis=-1)

        r_len = np.diff(np.append(r_start, rd.size))
        counts = np.outer(r_len, np.diff(np.append(c_start, cd.size)))
        parts = [counts[None].astype(np.float64), bsum(g), bsum(f), bsum(g * g), bsum(f * f)]
        parts += [bsum(g[i][None] * f) for i in range(b)]
        stats = np.concatenate(parts, axis=0)  # (width, nr, nc)
        stats = np.moveaxis(stats, 0, -1).reshape(-1, self._width)
        keys = [(int(i), int(j)) for i in r_id for j in c_id]
        full = self.block * self.block
        done: list[int] = []
        for idx, key in enumerate(keys):
            if not np.isnan(self.values[key]):
                raise QualityError(
                    f"Q2n block {key} received pixels twice; tiles must not overlap "
                    "(pass each pixel once, in one tile's core)"
                )
            if key in self._pending:
                stats[idx] += self._pending.pop(key)
            if stats[idx, 0] == full:
                done.append(idx)
            elif stats[idx, 0] > full:
                raise QualityError(f"Q2n block {key} received pixels twice; tiles overlap")
            else:
                self._pending[key] = stats[idx].copy()
        if done:
            vals = q2n_block_values(stats[done], b, self.block)
            for v, idx in zip(vals, done, strict=True):
                self.values[keys[idx]] = v

    @property
    def complete(self) -> bool:
        """True once every block has all its pixels."""
        return not np.isnan(self.values).any()

    def result(self) -> float:
        """Q2n = mean of the block values; refuses an incomplete image."""
        missing = int(np.isnan(self.values).sum())
        if missing:
            raise QualityError(
                f"Q2n: {missing} of {self.values.size} blocks are missing pixels; "
                "the tiles must cover the whole evaluated area"
            )
        return float(self.values.mean())


def q2n(fused: np.ndarray, gt: np.ndarray, block: int = BLOCK) -> float:
    """Q2n of (B, H, W) ``fused`` against ``gt`` (block 32, shift 32), ideal 1.

    quality.md A.6; toolbox ``q2n(I_GT, I_F, 32, 32)``. Any band count: 3 bands are
    padded to 4, 5-7 to 8, and so on. The border cut is the caller's.
    """
    f, g = check_pair(fused, gt, ("fused", "gt"))
    grid = Q2nGrid(f.shape[1], f.shape[2], f.shape[0], block)
    grid.add(f, g, 0, 0)
    return grid.result()
