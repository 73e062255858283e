"""Silencing rasterio's NotGeoreferencedWarning once the user has said so with --ratio."""

from __future__ import annotations

import warnings


def acknowledge_missing_georeference(ratio: int | None) -> None:
    """With ``--ratio``, ungeoreferenced inputs (and so an ungeoreferenced output) are what
    the user announced: rasterio's two-line warning on every open would only bury the
    command's one-line summary or error. Without ``--ratio`` the warning stays (and an
    ungeoreferenced pair is refused anyway, asking for ``--ratio``)."""
    if ratio is None:
        return
    from rasterio.errors import NotGeoreferencedWarning

    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
