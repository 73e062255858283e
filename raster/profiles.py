"""Output profiles: named sets of GDAL COG creation options (rio-cogeo's ``profiles``).

``--profile NAME`` picks one; ``--co KEY=VALUE`` overrides single options on top.
"""

from __future__ import annotations

from errors import OptionError, unknown_name

# Every profile's overviews are 2x2 means (raster.overviews), whichever writer makes the
# file; GDAL's COG driver would default to CUBIC (370 DN off the means on GSA's output of
# the WorldView-2 tile in ../shared/data, 743 DN in the issue).
_OVERVIEWS = {"OVERVIEW_RESAMPLING": "AVERAGE"}
PROFILES: dict[str, dict[str, str]] = {
    "deflate": {"COMPRESS": "DEFLATE", "PREDICTOR": "YES", "BLOCKSIZE": "512", **_OVERVIEWS},
    "zstd": {"COMPRESS": "ZSTD", "PREDICTOR": "YES", "BLOCKSIZE": "512", **_OVERVIEWS},
    "lzw": {"COMPRESS": "LZW", "PREDICTOR": "YES", "BLOCKSIZE": "512", **_OVERVIEWS},
    "raw": {"COMPRESS": "NONE", "BLOCKSIZE": "512", **_OVERVIEWS},
}
DEFAULT_PROFILE = "deflate"


def get_profile(name: str) -> dict[str, str]:
    """A copy of the named profile; unknown names list the valid ones."""
    key = name.strip().lower()
    if key not in PROFILES:
        raise unknown_name("output profile", name, sorted(PROFILES), "--profile")
    return dict(PROFILES[key])


def parse_creation_options(items: list[str]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` -> dict with upper-case keys (GDAL's convention).

    Keys and values are checked against GDAL's COG driver (an unknown one used to be
    ignored with a warning): :func:`raster.creation_options.check_creation_options`.
    """
    from raster.creation_options import check_creation_options

    out: dict[str, str] = {}
    for item in items:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise OptionError(f"--co {item!r} is not KEY=VALUE (e.g. --co COMPRESS=ZSTD)")
        k, v = item.split("=", 1)
        out[k.strip().upper()] = v.strip()
    check_creation_options(out)
    return out
