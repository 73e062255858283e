"""Process-wide settings a pansharp process applies at its start, never on import.

Why a function and not an import side effect: importing the library must leave the
importing process as it was (a notebook, a web service or a test runner decides its
own environment). Whoever owns the process calls :func:`apply_process_settings` once,
before anything imports torch: the ``pansharp`` command (:func:`pansharp_cli.main.main`),
the deep benchmark (``benchmarks/deep_throughput.py``), a batch worker.

The settings (:data:`PROCESS_SETTINGS`):

``THP_MEM_ALLOC_ENABLE=1``
    Large CPU tensors on transparent huge pages. PyTorch's CPU allocator (c10's
    ``alloc_cpu``) reads the variable once, at its first allocation, and from then on
    aligns every block of 2 MiB or more to the page size and ``madvise(MADV_HUGEPAGE)``-s
    it. Without it (and with the kernel's THP mode ``madvise``, the common default) the
    kernel faults in and zeroes every 4 KiB page of every activation: a FusionNet forward
    pass on a 1024^2 patch spent 15.6 s in the kernel for 10.9 s of compute, 2.45 s per
    patch; with it 3.7-5.2 s and 1.1-1.4 s per patch (2 cores). It must therefore be in
    the environment before torch allocates anything, i.e. before ``import torch``; set
    later, it has no effect on that process (its child processes still inherit it).

A value the user exported wins: a key already in the environment is left alone (so
``THP_MEM_ALLOC_ENABLE=0 pansharp fuse ...`` runs without huge pages).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from types import MappingProxyType

PROCESS_SETTINGS: Mapping[str, str] = MappingProxyType({"THP_MEM_ALLOC_ENABLE": "1"})


def apply_process_settings(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Put each of :data:`PROCESS_SETTINGS` into ``environ`` (default: ``os.environ``,
    which also updates the C environment that torch reads) unless the key is already
    there; return what was set (empty when everything was set already)."""
    env = os.environ if environ is None else environ
    applied: dict[str, str] = {}
    for key, value in PROCESS_SETTINGS.items():
        if key not in env:
            env[key] = value
            applied[key] = value
    return applied
