"""Silencing rasterio's NotGeoreferencedWarning in the commands that open rasters."""

from __future__ import annotations

import warnings


def acknowledge_missing_georeference(ratio: int | None = None) -> None:
    """Ignore rasterio's ``NotGeoreferencedWarning`` for the rest of the process.

    rasterio warns (two lines on stderr) on every open of a raster without a
    geotransform. pansharp checks the georeference itself (:func:`raster.scene.open_scene`):
    without ``--ratio`` an ungeoreferenced pair is refused with one line asking for it,
    with ``--ratio`` the missing georeference is what the user announced. Either way the
    warning only adds lines ahead of the command's one-line error or summary, so it goes,
    whatever ``ratio`` is (the argument stays for the callers that pass it).

    A process-wide filter is the CLI's to set, since it owns the process's output; the
    library never changes warning filters. Call it after the library imports rasterio
    (importing ``rasterio.errors`` imports all of rasterio: ~0.2 s, and before
    :func:`pansharp_cli.startup.library_imports` it would defeat that block).
    """
    del ratio
    from rasterio.errors import NotGeoreferencedWarning

    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
