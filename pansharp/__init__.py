"""pansharp's Python API: ``pansharp.fuse(pan, ms, method=...) -> xarray.DataArray``.

The command line (``pansharp fuse``) writes a COG; this returns the same pixels as a
lazily evaluated, dask-backed ``xarray.DataArray`` (:mod:`pansharp.lazy`).
"""

from pansharp.lazy import fuse

__all__ = ["fuse"]
