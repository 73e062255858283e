"""Low-level TIFF pieces for the streaming COG writer: predictors, IFD encoding, tag reading.

Only what a tiled, pixel-interleaved GeoTIFF needs (TIFF 6.0; BigTIFF; Adobe's
TechNote 3 floating-point predictor). GeoTIFF and GDAL metadata tags are not built
here: they are copied verbatim from a 1x1 template that GDAL itself writes, so the
georeferencing and band metadata are exactly what GDAL would write.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

# TIFF field types
BYTE, ASCII, SHORT, LONG, RATIONAL, SBYTE, UNDEFINED, SSHORT, SLONG = 1, 2, 3, 4, 5, 6, 7, 8, 9
SRATIONAL, FLOAT, DOUBLE, LONG8 = 10, 11, 12, 16
TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8}
TYPE_CHAR = {
    1: "B", 2: "B", 3: "H", 4: "I", 6: "b", 7: "B", 8: "h", 9: "i", 11: "f", 12: "d", 16: "Q",
}  # fmt: skip

# Tags copied from GDAL's template: photometric/extra samples, georeferencing, metadata.
TEMPLATE_TAGS = (262, 338, 33550, 33922, 34264, 34735, 34736, 34737, 42112, 42113)
OVERVIEW_TEMPLATE_TAGS = (262, 338, 42113)


@dataclass
class Tag:
    code: int
    type: int
    count: int
    data: bytes  # little-endian payload, len == count * TYPE_SIZE[type]


def tag(code: int, typ: int, values) -> Tag:
    """Build a tag from Python values (ASCII: a str, NUL added)."""
    if typ == ASCII:
        raw = values.encode("ascii", "replace") + b"\x00"
        return Tag(code, typ, len(raw), raw)
    vals = list(values) if isinstance(values, (list, tuple, np.ndarray)) else [values]
    raw = struct.pack("<" + TYPE_CHAR[typ] * len(vals), *vals)
    return Tag(code, typ, len(vals), raw)


def read_ifd0_tags(data: bytes, wanted: tuple[int, ...]) -> dict[int, Tag]:
    """Read the first IFD's tags listed in ``wanted`` from a little-endian TIFF/BigTIFF."""
    if data[:2] != b"II":
        raise ValueError("template TIFF is not little-endian")
    magic = struct.unpack_from("<H", data, 2)[0]
    big = magic == 43
    if big:
        off = struct.unpack_from("<Q", data, 8)[0]
        n = struct.unpack_from("<Q", data, off)[0]
        pos, esize, cfmt, inline = off + 8, 20, "<Q", 8
    else:
        off = struct.unpack_from("<I", data, 4)[0]
        n = struct.unpack_from("<H", data, off)[0]
        pos, esize, cfmt, inline = off + 2, 12, "<I", 4
    out: dict[int, Tag] = {}
    for i in range(n):
        e = pos + i * esize
        code, typ = struct.unpack_from("<HH", data, e)
        count = struct.unpack_from(cfmt, data, e + 4)[0]
        if code not in wanted or typ not in TYPE_SIZE:
            continue
        size = count * TYPE_SIZE[typ]
        vpos = e + 4 + (8 if big else 4)
        if size > inline:
            vpos = struct.unpack_from(cfmt, data, vpos)[0]
        out[code] = Tag(code, typ, count, bytes(data[vpos : vpos + size]))
    return out


@dataclass
class IfdEntry:
    """One IFD of a file as :func:`read_ifd_chain` finds it: where it is, its byte size
    (count, entries, next-IFD pointer), and each tag's type, count and where its value
    lies (out of line, or in the entry itself)."""

    position: int
    size: int
    tags: dict[int, tuple[int, int, int, bool]]  # code -> (type, count, position, inline)

    def out_of_line(self) -> dict[int, tuple[int, int]]:
        """Tag code -> (file position, bytes) of the values stored outside the IFD."""
        return {
            code: (at, count * TYPE_SIZE.get(typ, 1))
            for code, (typ, count, at, inline) in self.tags.items()
            if not inline
        }

    def values(self, data: bytes, code: int) -> tuple:
        """The numeric values of tag ``code``."""
        typ, count, at, _ = self.tags[code]
        return struct.unpack_from("<" + TYPE_CHAR[typ] * count, data, at)


def read_ifd_chain(data: bytes) -> list[IfdEntry]:
    """Every IFD of a little-endian TIFF or BigTIFF, in chain order (the first is the full
    resolution of a COG). For checking layouts: where IFDs and their values lie."""
    if data[:2] != b"II":
        raise ValueError("not a little-endian TIFF")
    big = struct.unpack_from("<H", data, 2)[0] == 43
    ptr, esize, head, inline = ("<Q", 20, 8, 8) if big else ("<I", 12, 2, 4)
    pos = struct.unpack_from(ptr, data, 8 if big else 4)[0]
    out: list[IfdEntry] = []
    while pos and len(out) < 10_000:
        n = struct.unpack_from("<Q" if big else "<H", data, pos)[0]
        tags: dict[int, tuple[int, int, int, bool]] = {}
        for i in range(n):
            e = pos + head + i * esize
            code, typ = struct.unpack_from("<HH", data, e)
            count = struct.unpack_from(ptr, data, e + 4)[0]
            field = e + 4 + inline
            if count * TYPE_SIZE.get(typ, 1) > inline:
                tags[code] = (typ, count, struct.unpack_from(ptr, data, field)[0], False)
            else:
                tags[code] = (typ, count, field, True)
        out.append(IfdEntry(pos, head + n * esize + inline, tags))
        pos = struct.unpack_from(ptr, data, pos + head + n * esize)[0]
    return out


def ifd_size(tags: list[Tag], big: bool, apart: Collection[int] = ()) -> int:
    """Bytes of an IFD plus its out-of-line values (each value block padded to even size),
    less those of the tags in ``apart`` (stored elsewhere: :func:`encode_ifd`)."""
    esize, inline, head, tail = (20, 8, 8, 8) if big else (12, 4, 2, 4)
    n = head + esize * len(tags) + tail
    for t in tags:
        if len(t.data) > inline and t.code not in apart:
            n += len(t.data) + (len(t.data) & 1)
    return n


def value_size(t: Tag, big: bool) -> int:
    """Bytes a tag's value takes outside its IFD (padded to even size); 0 when inline."""
    inline = 8 if big else 4
    return 0 if len(t.data) <= inline else len(t.data) + (len(t.data) & 1)


def encode_ifd(
    tags: list[Tag], offset: int, next_ifd: int, big: bool, apart: dict[int, int] | None = None
) -> bytes:
    """Serialise an IFD located at ``offset``; out-of-line values follow it directly,
    except those of the tags in ``apart``, which point at the position given there (the
    caller writes ``tag.data`` at it; a value that fits in its entry stays there)."""
    tags = sorted(tags, key=lambda t: t.code)
    apart = apart or {}
    esize, inline = (20, 8) if big else (12, 4)
    pointer = "<Q" if big else "<I"
    head = struct.pack("<Q", len(tags)) if big else struct.pack("<H", len(tags))
    entries_end = offset + len(head) + esize * len(tags) + (8 if big else 4)
    entries, extra = [], []
    value_pos = entries_end
    for t in tags:
        if len(t.data) <= inline:
            value = t.data.ljust(inline, b"\x00")
        elif t.code in apart:
            value = struct.pack(pointer, apart[t.code])
        else:
            value = struct.pack(pointer, value_pos)
            pad = t.data + (b"\x00" if len(t.data) & 1 else b"")
            extra.append(pad)
            value_pos += len(pad)
        count = struct.pack(pointer, t.count)
        entries.append(struct.pack("<HH", t.code, t.type) + count + value)
    nxt = struct.pack(pointer, next_ifd)
    return head + b"".join(entries) + nxt + b"".join(extra)


def horizontal_predictor(block: np.ndarray) -> np.ndarray:
    """TIFF predictor 2 on a (h, w, spp) integer block: difference with the pixel to the left,
    per sample, with wrap-around arithmetic."""
    udt = np.dtype(f"u{block.dtype.itemsize}")
    u = block.view(udt)
    out = np.empty_like(u)
    out[:, 0] = u[:, 0]
    np.subtract(u[:, 1:], u[:, :-1], out=out[:, 1:])
    return out


def float_predictor(block: np.ndarray) -> np.ndarray:
    """TIFF predictor 3 (Adobe TechNote 3) on a (h, w, spp) float block.

    Each row's samples are split into byte planes, most significant byte first, then
    byte-wise differenced with a stride of SamplesPerPixel (libtiff's ``fpDiff``).
    """
    h, w, spp = block.shape
    bps = block.dtype.itemsize
    le = block.astype(block.dtype.newbyteorder("<"), copy=False)
    planes = le.view(np.uint8).reshape(h, w * spp, bps)[:, :, ::-1]
    planes = np.ascontiguousarray(planes.transpose(0, 2, 1)).reshape(h, bps * w * spp)
    out = planes.copy()
    out[:, spp:] -= planes[:, :-spp]
    return out


def interleave(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """(B, h, w) band planes as a contiguous (h, w, B) pixel-interleaved array of ``dtype``
    (C casting, like ``astype``), the layout of a TIFF tile with PLANARCONFIG=1.

    Band by band: each plane is read contiguously and written with a stride of B samples.
    numpy's copy of the ``moveaxis`` view walks the planes B elements at a time instead:
    1.56 ms against 0.34 ms for a 512 x 512 x 4 uint16 tile here (0.3 s of CPU per
    8000^2 scene).
    """
    out = np.empty((*block.shape[1:], block.shape[0]), dtype=dtype)
    for b, plane in enumerate(block):
        np.copyto(out[:, :, b], plane, casting="unsafe")
    return out
