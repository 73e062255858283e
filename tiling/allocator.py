"""The process's heap policy for long tile loops: freed memory is kept for reuse.

Both engines allocate and free the same tile-sized arrays tile after tile (classical:
~30 MB of float and integer buffers per 512^2 tile; deep: the network's activations per
patch). By default glibc gives freed memory back to the kernel (its trim threshold
follows the largest block freed so far: a few MB here), so the next tile faults the
pages in and the kernel zeroes them again.
"""

from __future__ import annotations

import sys

# glibc's largest mmap threshold on 64-bit (HEAP_MAX_SIZE / 2): a block above it is always
# mmap-ed, and given back to the kernel when freed, so its pages are faulted in and
# zeroed again by the next allocation.
GLIBC_MMAP_CEILING = 32 << 20
_KEEPING = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed heap memory for reuse instead of trimming it.

    With ``M_TRIM_THRESHOLD`` raised to 1 GiB and a fixed 32 MiB ``M_MMAP_THRESHOLD``
    freed blocks stay in the heap. Measured on this project's 2-core machine:

    - deep (CPU inference): perf on a 4000^2 FusionNet run showed 29 % of the process's
      CPU in the kernel's clear_page; with activations under the mmap ceiling (see
      :func:`tiling.patches.cpu_patch_cap`) a forward ran at 1.19 Mpx/s on 496^2 patches,
      against 0.69 (496^2) and 0.74 Mpx/s (1024^2) without it;
    - classical (8000^2 Brovey, 4 alternating pairs): half the page faults (63k -> 33k),
      process CPU / compression CPU 1.190-1.199 against 1.205-1.230, ~0.25 s of CPU; peak
      RSS 137-148 MB in-process against 130-157 MB, and in the fuse benchmark 169-172 MB
      against 153-157 MB (benchmarks/fuse_vs_gdal.py, before and after).

    Process-wide; memory is reused rather than added, so the peak grows little, but RSS
    no longer shrinks between tiles. Returns whether glibc accepted it (False on other C
    libraries and systems).
    """
    global _KEEPING
    if _KEEPING:
        return True
    import ctypes

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        ok = libc.mallopt(m_trim_threshold, 1 << 30) == 1
        ok = libc.mallopt(m_mmap_threshold, GLIBC_MMAP_CEILING) == 1 and ok
    except (OSError, AttributeError):
        return False
    _KEEPING = ok
    return ok
