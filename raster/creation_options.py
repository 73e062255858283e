"""Which ``--co KEY=VALUE`` GDAL's COG driver accepts, from the driver itself.

GDAL takes an unknown key or an unknown value of a known key with a warning and goes
on (``--co COMPRESS=NOPE`` gave an uncompressed file, ``--co FOO=1`` nothing at all), so
pansharp checks them first and refuses with the valid ones listed. The list is the one
the COG driver publishes (``DMD_CREATIONOPTIONLIST``, the XML ``gdalinfo --format COG``
prints): the keys, each one's type (``int``, ``float``, ``boolean``, ``string``,
``string-select`` with its values and their aliases) and limits. rasterio does not
expose it, so it is read through GDAL's C API (``GDALGetDriverByName``,
``GDALGetMetadataItem``) in the GDAL library rasterio is linked with: symbols are looked
up from rasterio's own extension module, whose dependencies include that library,
whatever it is called in the wheel or the system.

A few limits the XML does not state come from GDAL's documentation:

- ``BLOCKSIZE``: a multiple of 16 (TIFF 6.0, section 15: TileWidth and TileLength "must
  be a multiple of 16"; libtiff refuses others, "Bad value 200 for TileWidth tag").
- ``LEVEL``: DEFLATE 1-12 (libdeflate, which GDAL and the streaming writer use; zlib
  stops at 9 and GDAL clamps), ZSTD 1-22, LZMA 0-9 (GDAL's GTiff driver, ZLEVEL /
  ZSTD_LEVEL / LZMA_PRESET); for the LERC_* variants their second codec's range.
- ``QUALITY``, ``OVERVIEW_QUALITY``: 1-100 (the XML says so in its description).
- ``NUM_THREADS``: a positive integer or ALL_CPUS.
"""

from __future__ import annotations

import ctypes
import functools
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from errors import OptionError

FLAG = "--co"
_BOOLEAN = ("YES", "NO", "TRUE", "FALSE", "ON", "OFF", "1", "0")  # GDAL's CPLTestBool
_LEVELS = {  # COMPRESS -> LEVEL range (module docstring)
    "DEFLATE": (1, 12),
    "LERC_DEFLATE": (1, 12),
    "ZSTD": (1, 22),
    "LERC_ZSTD": (1, 22),
    "LZMA": (0, 9),
}
_PERCENT = ("QUALITY", "OVERVIEW_QUALITY")


@dataclass(frozen=True)
class DriverOption:
    """One creation option of the driver: its type, allowed values (canonical value ->
    its aliases) for ``string-select``, and numeric limits."""

    name: str
    type: str
    values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    minimum: float | None = None
    maximum: float | None = None


def parse_option_list(xml: str) -> dict[str, DriverOption]:
    """GDAL's ``<CreationOptionList>`` XML -> {KEY: DriverOption}."""
    out: dict[str, DriverOption] = {}
    for opt in ET.fromstring(xml).iter("Option"):
        name = (opt.get("name") or "").upper()
        if not name:
            continue
        values: dict[str, tuple[str, ...]] = {}
        for v in opt.iter("Value"):
            text = (v.text or "").strip()
            if text:
                aliases = tuple(a.strip() for a in (v.get("alias") or "").split(",") if a.strip())
                values[text] = aliases
        out[name] = DriverOption(
            name=name,
            type=(opt.get("type") or "string").lower(),
            values=values,
            minimum=_number(opt.get("min")),
            maximum=_number(opt.get("max")),
        )
    return out


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


@functools.cache
def cog_driver_options() -> dict[str, DriverOption] | None:
    """The COG driver's creation options, or None where GDAL's C API cannot be reached
    (then GDAL itself is left to judge the options)."""
    xml = _driver_metadata("COG", "DMD_CREATIONOPTIONLIST")
    if not xml:
        return None
    try:
        return parse_option_list(xml)
    except ET.ParseError:
        return None


def _driver_metadata(driver: str, item: str) -> str | None:
    try:
        import rasterio
        import rasterio._base

        lib = ctypes.CDLL(rasterio._base.__file__)
        by_name = lib.GDALGetDriverByName
        by_name.argtypes = [ctypes.c_char_p]
        by_name.restype = ctypes.c_void_p
        get_item = lib.GDALGetMetadataItem
        get_item.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        get_item.restype = ctypes.c_char_p
        with rasterio.Env():  # drivers are registered inside an environment
            handle = by_name(driver.encode())
            if not handle:
                return None
            raw = get_item(handle, item.encode(), None)
    except (OSError, AttributeError, ImportError):
        return None
    return raw.decode("utf-8", "replace") if raw else None


def check_creation_options(
    options: dict[str, str], flag: str = FLAG, compress: str | None = None
) -> None:
    """Refuse (:class:`errors.OptionError`, exit 2) a key the COG driver does not know or
    a value it would not take, naming the option and listing what is valid.

    ``options``: upper- or lower-case keys, as given or merged with a profile. The LEVEL
    range depends on the codec in effect: ``options``' COMPRESS, else ``compress``, else
    (the ``--co`` items alone, before the profile is known) the widest range, 0-22.
    """
    known = cog_driver_options()
    opts = {str(k).strip().upper(): str(v).strip() for k, v in options.items()}
    for key, value in opts.items():
        if known is not None:
            if key not in known:
                raise OptionError(
                    f"{flag} {key}={value}: unknown creation option {key} for a COG; valid keys: "
                    f"{', '.join(sorted(known))}"
                )
            _check_value(known[key], value, flag)
        _check_extra(key, value, opts, flag, compress)


def _check_value(opt: DriverOption, value: str, flag: str) -> None:
    bad = f"{flag} {opt.name}={value}"
    up = value.upper()
    if opt.type == "string-select" and opt.values:
        accepted = {v.upper() for v in opt.values} | {
            a.upper() for aliases in opt.values.values() for a in aliases
        }
        if {"YES", "NO"} <= accepted:
            accepted |= set(_BOOLEAN)
        if up not in accepted:
            listed = ", ".join(
                v + (f" ({'/'.join(a)})" if a else "") for v, a in opt.values.items()
            )
            raise OptionError(f"{bad}: not a valid value; valid values: {listed}")
    elif opt.type == "boolean":
        if up not in _BOOLEAN:
            raise OptionError(f"{bad}: not a valid value; give YES or NO")
    elif opt.type in ("int", "integer", "float"):
        try:
            number = int(value) if opt.type != "float" else float(value)
        except ValueError:
            kind = "an integer" if opt.type != "float" else "a number"
            raise OptionError(f"{bad}: not {kind}; give e.g. {opt.name}={_example(opt)}") from None
        if opt.minimum is not None and number < opt.minimum:
            raise OptionError(f"{bad}: below the minimum {_fmt(opt.minimum)}")
        if opt.maximum is not None and number > opt.maximum:
            raise OptionError(f"{bad}: above the maximum {_fmt(opt.maximum)}")


def _check_extra(
    key: str, value: str, opts: dict[str, str], flag: str, compress: str | None
) -> None:
    """The limits the XML leaves out (module docstring)."""
    bad = f"{flag} {key}={value}"
    if key == "BLOCKSIZE":
        n = _int(value, bad)
        if n <= 0 or n % 16:
            raise OptionError(f"{bad}: tiles must be a multiple of 16 pixels, e.g. 256 or 512")
    elif key == "LEVEL":
        n = _int(value, bad)
        codec = (opts.get("COMPRESS") or compress or "").upper()
        if codec in _LEVELS:
            lo, hi = _LEVELS[codec]
            if not lo <= n <= hi:
                raise OptionError(f"{bad}: {codec} levels go from {lo} to {hi}")
        elif not 0 <= n <= 22:
            ranges = ", ".join(f"{c} {lo}-{hi}" for c, (lo, hi) in _LEVELS.items())
            raise OptionError(f"{bad}: compression levels go from 0 to 22 at most ({ranges})")
    elif key in _PERCENT:
        n = _int(value, bad)
        if not 1 <= n <= 100:
            raise OptionError(f"{bad}: quality goes from 1 to 100")
    elif key == "NUM_THREADS" and value.upper() != "ALL_CPUS":
        try:
            ok = int(value) >= 1
        except ValueError:
            ok = False
        if not ok:
            raise OptionError(f"{bad}: give a number of threads (1 or more) or ALL_CPUS")


def _int(value: str, bad: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise OptionError(f"{bad}: not an integer") from None


def _example(opt: DriverOption) -> str:
    if opt.minimum is not None:
        return _fmt(max(opt.minimum, 1))
    return "1"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
