"""A registered method prepared on a scene as ``fuse`` prepares it (sensor from the
scene, the fuse context, one thread), for tests that call ``apply`` on hand-made
patch batches."""

from __future__ import annotations

from typing import Any

from models.protocol import RunSettings
from raster.scene import open_scene
from tiling.executor import context_for, prepare
from tiling.fuse import FuseOptions, build_context, resolve_sensor


def prepared_method(pan: str, ms: list[str], name: str, **settings: Any) -> Any:
    """``prepare(name, ...)`` on the scene ``pan`` / ``ms`` with ``RunSettings(**settings)``."""
    scene = open_scene(pan, ms)
    sensor = resolve_sensor(scene, None)
    ctx = build_context(scene, sensor, FuseOptions(), 16)
    run = RunSettings(**settings)
    return prepare(name, scene, context_for(scene, ctx, sensor.name, run, threads=1))
