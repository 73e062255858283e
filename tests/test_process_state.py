"""Importing pansharp changes nothing process-wide; the ``pansharp`` entry applies its
settings (tiling.process) before any command can import torch, and an exported value wins.

Every probe runs in a fresh interpreter (tests.probe): what it checks is process-wide
and one-way, and this test process has imported everything long ago.
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from tests.probe import run_python
from tiling.process import PROCESS_SETTINGS, apply_process_settings

# The process's state, as comparable Python values (``snapshot()``), and the first
# difference between two of them (``diff(a, b)``). Shared by the probes below.
STATE = textwrap.dedent(
    """
    import gc, json, logging, os, signal, sys, threading, warnings

    GDAL_KEYS = ("GDAL_CACHEMAX", "GDAL_NUM_THREADS", "GDAL_PAM_ENABLED", "CPL_DEBUG",
                 "CPL_LOG", "GDAL_DISABLE_READDIR_ON_OPEN", "CHECK_DISK_FREE_SPACE")

    def snapshot():
        s = {
            "os.environ": dict(os.environ),
            "sys.path": list(sys.path),
            "cwd": os.getcwd(),
            "root logger": (logging.root.level, list(logging.root.handlers)),
            "other loggers' handlers": {
                name: list(lg.handlers)
                for name, lg in logging.Logger.manager.loggerDict.items()
                if isinstance(lg, logging.Logger) and not name.startswith("pansharp")
                and lg.handlers
            },
            "logging.disable": logging.root.manager.disable,
            "warnings.filters": list(warnings.filters),
            "warnings.showwarning": warnings.showwarning,
            "signal handlers": {int(n): signal.getsignal(n) for n in signal.valid_signals()
                                if n not in (signal.SIGKILL, signal.SIGSTOP)},
            "sys.excepthook": sys.excepthook,
            "threading.excepthook": threading.excepthook,
            "gc": (gc.isenabled(), gc.get_threshold()),
            "recursion limit, switch interval": (sys.getrecursionlimit(),
                                                 sys.getswitchinterval()),
            "nice": os.getpriority(os.PRIO_PROCESS, 0),
        }
        if "numpy" in sys.modules:
            np = sys.modules["numpy"]
            s["np.seterr"] = np.geterr()
            s["np print options"] = np.get_printoptions()
        torch = sys.modules.get("torch")
        if torch is not None and hasattr(torch, "get_num_threads"):
            s["torch threads"] = (torch.get_num_threads(), torch.get_num_interop_threads())
            s["torch defaults"] = (torch.get_default_dtype(), torch.is_grad_enabled(),
                                   torch.are_deterministic_algorithms_enabled())
        if "rasterio.env" in sys.modules:
            env = sys.modules["rasterio.env"]
            s["rasterio/GDAL config"] = (env.hasenv(),
                                         {k: env.get_gdal_config(k) for k in GDAL_KEYS})
        if "tiling.allocator" in sys.modules:  # keep_freed_memory's mallopt not applied
            s["mallopt (tiling.allocator)"] = sys.modules["tiling.allocator"]._KEEPING
        return s

    def import_dependencies(torch):
        import importlib
        for dep in ("numpy", "scipy", "scipy.ndimage", "rasterio", "rasterio.env", "affine",
                    "safetensors", "threadpoolctl", "typer", "click", "rich", "matplotlib",
                    *(["torch"] if torch else [])):
            try:
                importlib.import_module(dep)
            except ImportError:
                pass

    def diff(a, b):
        return {k: [repr(a.get(k)), repr(b.get(k))] for k in a if a[k] != b.get(k)}
    """
)

# ``import models.deep, tiling, quality`` after the third-party stack (not torch, which
# models.deep must not import): numpy's import alone adds warning filters, for one.
PACKAGES = STATE + textwrap.dedent(
    """
    import_dependencies(torch=False)
    before = snapshot()
    import models.deep, tiling, quality  # noqa: E401,F401
    after = snapshot()
    print(json.dumps({"changed": diff(before, after),
                      "torch imported": "torch" in sys.modules}))
    """
)

# Every module of the library, one after the other. The third-party stack is imported
# first, so what it does to the process on import is not counted as pansharp's; each
# change found is named with the module whose import made it.
EVERY_MODULE = STATE + textwrap.dedent(
    """
    import importlib, pkgutil
    LIBRARY = ("errors", "models", "tiling", "quality", "raster", "physics", "pansharp_cli")
    import_dependencies(torch=True)
    names = []
    for top in LIBRARY:
        names.append(top)
        mod = importlib.import_module(top)
        if hasattr(mod, "__path__"):
            names += [m.name for m in pkgutil.walk_packages(mod.__path__, top + ".")]
    changed, skipped, imported = {}, [], []
    state = snapshot()
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:  # an optional dependency absent here
            if (exc.name or "").split(".")[0] in LIBRARY:
                raise
            skipped.append(f"{name} (needs {exc.name})")
            continue
        imported.append(name)
        now = snapshot()
        for key, values in diff(state, now).items():
            changed[f"{key}, on importing {name}"] = values
        state = now
    print(json.dumps({"changed": changed, "skipped": skipped, "imported": imported}))
    """
)

# The ``pansharp`` entry, with one command that imports torch: records the environment
# when torch's import starts (Python's and the C one, which torch's allocator reads).
CLI_ENTRY = textwrap.dedent(
    """
    import ctypes, json, os, sys

    KEY = "THP_MEM_ALLOC_ENABLE"
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    seen = {}

    class SeeTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" and "torch" not in seen:
                c = libc.getenv(KEY.encode())
                seen["torch"] = [os.environ.get(KEY), c.decode() if c is not None else None]
            return None

    sys.meta_path.insert(0, SeeTorch())
    import pansharp_cli.main as cli
    on_import = {"torch imported": "torch" in sys.modules, "value": os.environ.get(KEY)}

    @cli.app.command("probe-torch")
    def probe_torch() -> None:
        import torch  # noqa: F401

    cli.main(["probe-torch"])
    print(json.dumps({"on import": on_import, "at torch import": seen.get("torch")}))
    """
)


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without pansharp's settings (an in-process CLI test
    may have applied them here), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in PROCESS_SETTINGS}
    env.update(extra)
    return env


def test_importing_the_packages_changes_no_process_state():
    out = json.loads(run_python(PACKAGES, env=_env()))
    assert out["changed"] == {}, out["changed"]
    assert not out["torch imported"], "models.deep must stay torch-free on import"


def test_importing_every_library_module_changes_no_process_state():
    out = json.loads(run_python(EVERY_MODULE, env=_env()))
    assert out["changed"] == {}, out["changed"]
    # the walk really covered the library: the packages and their torch modules
    for name in ("errors", "models.deep.fusionnet", "tiling.job", "pansharp_cli.main"):
        assert name in out["imported"], (name, out["skipped"])


@pytest.mark.parametrize("exported", [None, "0"])
def test_cli_entry_sets_huge_pages_before_torch_unless_exported(exported: str | None):
    key = "THP_MEM_ALLOC_ENABLE"
    env = _env() if exported is None else _env(**{key: exported})
    out = json.loads(run_python(CLI_ENTRY, env=env))
    # importing the CLI sets nothing and imports no torch; its entry sets it first
    assert out["on import"] == {"torch imported": False, "value": exported}
    want = PROCESS_SETTINGS[key] if exported is None else exported
    assert out["at torch import"] == [want, want]


def test_apply_process_settings_keeps_exported_values_and_reports_what_it_set():
    empty: dict[str, str] = {}
    assert apply_process_settings(empty) == dict(PROCESS_SETTINGS)
    assert empty == dict(PROCESS_SETTINGS)
    assert apply_process_settings(empty) == {}  # nothing left to set
    user = {key: f"user-{key}" for key in PROCESS_SETTINGS}
    assert apply_process_settings(user) == {}
    assert user == {key: f"user-{key}" for key in PROCESS_SETTINGS}
