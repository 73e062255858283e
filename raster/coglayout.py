"""The last step of the streaming COG writer: lay the scratch files out as a COG.

A COG puts the header, GDAL's "ghost" area and every IFD first (with its small values;
then every level's TileOffsets and TileByteCounts arrays, full resolution first, so that
one small read gets the IFDs of every level, as ``gdal_translate -of COG`` lays them
out), then the tile data of the smallest overview ... the full resolution last, each
level's tiles in row-major order (the layout the ghost header announces; GDAL's COG
driver writes the same five keys). The writer has each level's framed tiles in a scratch
file. The full-resolution level is ~3/4 of the bytes; when its scratch file already
holds its tiles in row-major order and the file system can insert a range at the front
of a file (Linux ``fallocate(FALLOC_FL_INSERT_RANGE)``: ext4, XFS), the header and the
overviews go into that range and the file becomes the output without its bulk being
copied (the copy took 0.2-0.7 s of a single thread at 8000^2 x 4 uint16, 1.6 s at
16000^2; ext4 first writes the file's dirty pages back: the writer has that done while
it builds the overviews, see :func:`write_back`; the disk gets the image once, not
twice). Otherwise every level is copied into a new file (kernel-side copies).
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from errors import OutputError
from raster.tiff import Tag, encode_ifd, ifd_size, value_size

FRAME = 8  # bytes around each tile: 4-byte size before it, its last 4 bytes after it
TILE_ARRAYS = (324, 325)  # TileOffsets, TileByteCounts: stored after every IFD

_GHOST_BODY = (
    "LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
    "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n "
)
GHOST = f"GDAL_STRUCTURAL_METADATA_SIZE={len(_GHOST_BODY):06d} bytes\n" + _GHOST_BODY

_FALLOC_FL_INSERT_RANGE = 0x20  # linux/falloc.h
# SYNC_FILE_RANGE_WAIT_BEFORE | _WRITE | _WAIT_AFTER (linux/fs.h): write back, wait
_SYNC_FILE_RANGE_WAIT_ALL = 1 | 2 | 4


class LevelFile(Protocol):
    """One level's scratch file: framed tiles, ``offsets[(row, col)] = (position, size)``."""

    path: Path | None
    offsets: dict[tuple[int, int], tuple[int, int]]


LevelTags = Callable[[int, list[int], list[int], bool], list[Tag]]


def write_framed(fd: int, data: bytes) -> int:
    """Append one tile as BLOCK_LEADER=SIZE_AS_UINT4 + data + BLOCK_TRAILER (last 4 bytes
    repeated, which lets a reader detect a truncated or corrupt block); bytes written."""
    parts = [struct.pack("<I", len(data)), data, data[-4:].rjust(4, b"\x00")]
    n = len(data) + FRAME
    done = os.writev(fd, parts)
    while done < n:  # short writes are rare but allowed
        blob = b"".join(parts)
        done += os.write(fd, blob[done:])
    return n


def in_row_major_order(level: LevelFile) -> bool:
    """True when the scratch file holds the level's tiles back to back in row-major order."""
    pos = 0
    for rc in sorted(level.offsets):
        at, n = level.offsets[rc]
        if at != pos:
            return False
        pos += n + FRAME
    return True


@dataclass
class _Layout:
    big: bool
    ifd_start: int
    ifd_sizes: list[int]
    data_start: int
    bases: dict[int, int]  # level -> file position of its first framed tile
    placed: dict[int, tuple[list[int], list[int]]]  # level -> (tile offsets, byte counts)
    arrays: dict[int, dict[int, int]]  # level -> {tag code: position} of its tile arrays


def _layout(levels: list[LevelFile], tags_for: LevelTags, bigtiff: str, align: int) -> _Layout:
    """Where everything goes. ``align`` > 1: the full-resolution level starts on a
    multiple of it (the in-place assembly inserts whole file-system blocks)."""
    order = [sorted(lv.offsets) for lv in levels]
    data_size = sum(sum(n + FRAME for _, n in lv.offsets.values()) for lv in levels)
    big = bigtiff == "YES"
    for _ in range(2):  # classic first; BigTIFF if offsets would not fit in 32 bits
        header = 16 if big else 8
        zeros = [[0] * len(o) for o in order]
        tags = [tags_for(k, zeros[k], zeros[k], big) for k in range(len(levels))]
        sizes = [ifd_size(t, big, TILE_ARRAYS) for t in tags]
        ifd_start = header + len(GHOST)
        ifd_start += ifd_start & 1
        # every IFD first, then every level's tile offsets and byte counts (largest level
        # first), as GDAL's COG driver lays them out: one read of the head has all IFDs
        pos = ifd_start + sum(sizes)
        arrays: dict[int, dict[int, int]] = {}
        for k, level_tags in enumerate(tags):
            arrays[k] = {}
            for t in sorted(level_tags, key=lambda t: t.code):
                if t.code in TILE_ARRAYS and value_size(t, big):
                    arrays[k][t.code] = pos
                    pos += value_size(t, big)
        data_start = pos
        if big or data_start + data_size + align < 2**32 - 1:
            break
        if bigtiff == "NO":
            raise OutputError("output exceeds 4 GiB; pass --co BIGTIFF=YES (or drop BIGTIFF=NO)")
        big = True
    # smallest overview first, full resolution last; within a level row-major; a tile's
    # offset points past its 4-byte leader
    pos = data_start
    bases: dict[int, int] = {}
    placed: dict[int, tuple[list[int], list[int]]] = {}
    for k in reversed(range(len(levels))):
        if k == 0 and align > 1:
            pos = -(-pos // align) * align
        bases[k] = pos
        offsets, counts = [], []
        for rc in order[k]:
            n = levels[k].offsets[rc][1]
            offsets.append(pos + 4)
            counts.append(n)
            pos += n + FRAME
        placed[k] = (offsets, counts)
    return _Layout(big, ifd_start, sizes, data_start, bases, placed, arrays)


def _head(lay: _Layout, tags_for: LevelTags, n_levels: int) -> bytes:
    """TIFF header, ghost area, every IFD, then every level's tile offsets and byte
    counts: the bytes before ``lay.data_start``."""
    if lay.big:
        out = [b"II" + struct.pack("<HHHQ", 43, 8, 0, lay.ifd_start)]
    else:
        out = [b"II" + struct.pack("<HI", 42, lay.ifd_start)]
    out.append(GHOST.encode("ascii"))
    out.append(b"\x00" * (lay.ifd_start - sum(map(len, out))))
    at = lay.ifd_start
    arrays_at = lay.ifd_start + sum(lay.ifd_sizes)  # where the tile arrays begin
    apart: list[bytes] = []
    for k in range(n_levels):
        tags = tags_for(k, *lay.placed[k], lay.big)
        nxt = at + lay.ifd_sizes[k] if k + 1 < n_levels else 0
        blob = encode_ifd(tags, at, nxt, lay.big, lay.arrays[k])
        if len(blob) != lay.ifd_sizes[k]:
            raise OutputError(f"internal error: IFD {k} size {len(blob)} != {lay.ifd_sizes[k]}")
        out.append(blob)
        at += lay.ifd_sizes[k]
        by_code = {t.code: t.data for t in tags}
        for code in sorted(lay.arrays[k]):
            if lay.arrays[k][code] != arrays_at + sum(map(len, apart)):
                raise OutputError(f"internal error: IFD {k} tag {code} is misplaced")
            data = by_code[code]
            apart.append(data + b"\x00" * (len(data) & 1))
    out += apart
    head = b"".join(out)
    if len(head) != lay.data_start:
        raise OutputError(f"internal error: head of {len(head)} bytes, not {lay.data_start}")
    return head


def assemble(
    levels: list[LevelFile], tags_for: LevelTags, bigtiff: str, folder: Path
) -> tuple[Path, str]:
    """Build the COG from the levels' scratch files; (its path, "in-place" or "copy")."""
    main = levels[0]
    if main.path is not None and in_row_major_order(main):
        if _assemble_in_place(levels, tags_for, bigtiff):
            return main.path, "in-place"
    final = folder / "final.tif"
    lay = _layout(levels, tags_for, bigtiff, 1)
    fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        _pwrite_all(fd, _head(lay, tags_for, len(levels)), 0)
        for k in reversed(range(len(levels))):
            _copy_level(levels[k], fd, lay.bases[k])
    finally:
        os.close(fd)
    return final, "copy"


def _assemble_in_place(levels: list[LevelFile], tags_for: LevelTags, bigtiff: str) -> bool:
    """Insert the header and the overviews in front of the full-resolution scratch file.

    False (file untouched) where the file system cannot insert a range."""
    main = levels[0]
    fd = os.open(main.path, os.O_RDWR)  # type: ignore[arg-type]
    try:
        block = max(4096, os.fstatvfs(fd).f_frsize)
        lay = _layout(levels, tags_for, bigtiff, block)
        if not _insert_front(fd, lay.bases[0]):
            return False
        _pwrite_all(fd, _head(lay, tags_for, len(levels)), 0)
        for k in range(1, len(levels)):
            _copy_level(levels[k], fd, lay.bases[k])
        # the gap before the full resolution reads as zeros (a hole: no disk space)
    finally:
        os.close(fd)
    return True


def _insert_front(fd: int, length: int) -> bool:
    """``fallocate(fd, FALLOC_FL_INSERT_RANGE, 0, length)``: shift the file's content by
    ``length`` bytes without copying it. False where unsupported (not Linux, tmpfs, btrfs,
    network file systems, a length not a multiple of the block size)."""
    if length <= 0:
        return False
    fallocate = _libc("fallocate", (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64))
    return fallocate is not None and fallocate(fd, _FALLOC_FL_INSERT_RANGE, 0, length) == 0


def write_back(fd: int) -> bool:
    """Write the file's dirty pages to disk and wait for them, without a device cache
    flush (Linux ``sync_file_range``, whole file); False where unavailable.

    Why: inserting a range makes ext4 write every dirty page of the file back first. Done
    beforehand in a thread while the overviews are compressed, that I/O no longer holds
    up the end of the run (:class:`raster.fastcog.StreamingCogWriter.commit`).
    """
    sfr = _libc("sync_file_range", (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint))
    return sfr is not None and sfr(fd, 0, 0, _SYNC_FILE_RANGE_WAIT_ALL) == 0


@functools.cache
def _libc(name: str, argtypes: tuple[type, ...]) -> Callable[..., int] | None:
    """A Linux C library function returning int, or None (other systems, old libraries)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = list(argtypes)
    fn.restype = ctypes.c_int
    return fn


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _copy_level(level: LevelFile, out: int, at: int) -> None:
    """Copy a level's framed tiles, in row-major order, to ``out`` from position ``at``."""
    spans = [(level.offsets[rc][0], level.offsets[rc][1] + FRAME) for rc in sorted(level.offsets)]
    _copy_spans(level.path, spans, out, at)  # type: ignore[arg-type]


def _copy_spans(src: Path, spans: list[tuple[int, int]], out: int, at: int) -> None:
    """Copy the byte ranges ``(offset, length)`` of ``src``, in that order, to ``out``
    from position ``at`` (kernel-side copies where possible)."""
    with open(src, "rb") as fin:
        src_fd = fin.fileno()
        for offset, length in spans:
            done = 0
            try:
                while done < length:
                    k = os.copy_file_range(src_fd, out, length - done, offset + done, at + done)
                    if k == 0:
                        break
                    done += k
            except (AttributeError, OSError):
                pass
            while done < length:
                chunk = os.pread(src_fd, min(length - done, 1 << 22), offset + done)
                if not chunk:
                    raise OutputError(f"internal error: scratch file {src} is short")
                _pwrite_all(out, chunk, at + done)
                done += len(chunk)
            at += length
