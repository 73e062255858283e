"""Output profiles: named sets of GDAL COG creation options (rio-cogeo's ``profiles``).

``--profile NAME`` picks one; ``--co KEY=VALUE`` overrides single options on top.
"""

from __future__ import annotations

from errors import OptionError, unknown_name

PROFILES: dict[str, dict[str, str]] = {
    "deflate": {"COMPRESS": "DEFLATE", "PREDICTOR": "YES", "BLOCKSIZE": "512"},
    "zstd": {"COMPRESS": "ZSTD", "PREDICTOR": "YES", "BLOCKSIZE": "512"},
    "lzw": {"COMPRESS": "LZW", "PREDICTOR": "YES", "BLOCKSIZE": "512"},
    "raw": {"COMPRESS": "NONE", "BLOCKSIZE": "512"},
}
DEFAULT_PROFILE = "deflate"


def get_profile(name: str) -> dict[str, str]:
    """A copy of the named profile; unknown names list the valid ones."""
    key = name.strip().lower()
    if key not in PROFILES:
        raise unknown_name("output profile", name, sorted(PROFILES), "--profile")
    return dict(PROFILES[key])


def parse_creation_options(items: list[str]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` -> dict with upper-case keys (GDAL's convention)."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise OptionError(f"--co {item!r} is not KEY=VALUE (e.g. --co COMPRESS=ZSTD)")
        k, v = item.split("=", 1)
        out[k.strip().upper()] = v.strip()
    return out
