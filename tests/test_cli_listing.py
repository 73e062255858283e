"""`pansharp models` / `pansharp sensors` read the registry and the presets; VRT inputs."""

from __future__ import annotations

import json

import numpy as np
import rasterio

from models.registry import REGISTRY, model_names
from pansharp_cli.main import main
from physics.sensors import SENSORS
from tiling.fuse import FuseOptions, fuse_files


def run(args, capsys):
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    return capsys.readouterr().out


def test_models_json_lists_the_whole_registry(capsys):
    rows = json.loads(run(["models", "--json"], capsys))
    assert [r["name"] for r in rows] == model_names()
    for r in rows:
        info = REGISTRY[r["name"]].info
        assert r["family"] == info.family and r["needs_fit"] == info.needs_fit
        assert r["halo_at_ratio"]["4"] == info.halo(4) or r["halo_at_ratio"][4] == info.halo(4)
    table = run(["models"], capsys)
    for name in model_names():
        assert name in table


def test_sensors_json_lists_every_preset(capsys):
    rows = json.loads(run(["sensors", "--json"], capsys))
    assert {r["name"] for r in rows} == set(SENSORS)
    wv2 = next(r for r in rows if r["name"] == "worldview2")
    assert wv2["pan_gnyq"] == 0.11 and len(wv2["ms_gnyq"]) == 8


def test_vrt_inputs(make_scene, tmp_path):
    """A VRT stacking single-band MS files is as good as the files themselves."""
    s = make_scene(pan_shape=(256, 256), ratio=4, bands=3, single_band_files=True)
    with rasterio.open(s.ms[0]) as ds:
        h, w, dt = ds.height, ds.width, ds.dtypes[0]
        gt = ", ".join(str(v) for v in ds.transform.to_gdal())
        srs = ds.crs.to_wkt()
    bands = "".join(
        f'<VRTRasterBand dataType="{dt.capitalize().replace("Uint", "UInt")}" band="{i + 1}">'
        f"<SimpleSource><SourceFilename>{p}</SourceFilename><SourceBand>1</SourceBand>"
        f"</SimpleSource></VRTRasterBand>"
        for i, p in enumerate(s.ms)
    )
    vrt = tmp_path / "ms.vrt"
    vrt.write_text(
        f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}"><SRS>{srs}</SRS>'
        f"<GeoTransform>{gt}</GeoTransform>{bands}</VRTDataset>"
    )
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    fuse_files(s.pan, s.ms, str(a), FuseOptions(method="gsa"))
    fuse_files(s.pan, [str(vrt)], str(b), FuseOptions(method="gsa"))
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert y.count == 3
        assert np.array_equal(x.read(), y.read())
