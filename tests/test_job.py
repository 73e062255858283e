"""A FuseJob travels: pickled into a spawn worker, or as JSON, and runs the same there."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import multiprocessing
import pickle
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio

import errors
from errors import InputFileError, OptionError, OutputError, PansharpError
from tiling.fuse import FuseOptions
from tiling.job import FuseJob, run_job


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    """One spawn worker for the module (a fresh interpreter: nothing inherited but the job)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
        yield ex


def _job(pan: str, ms: list[str], out: Path, **opts) -> FuseJob:
    return FuseJob(pan=pan, ms=tuple(ms), out=str(out), options=FuseOptions(**opts))


def _rich_options() -> FuseOptions:
    """Options with every kind of field value set (lists, dicts, None, bools)."""
    return FuseOptions(
        method="brovey",
        sensor="generic",
        band_weights=[0.25, 0.25, 0.3, 0.2],
        nodata=0.0,
        tile=64,
        threads=2,
        dtype="float32",
        creation_options={"BLOCKSIZE": "256"},
        overwrite=True,
        method_options={"alpha": 0.5, "levels": [1, 2], "name": "x", "flag": None},
    )


def test_job_pickles_and_keeps_its_own_options(tmp_path: Path):
    opts = _rich_options()
    job = FuseJob(pan=tmp_path / "pan.tif", ms=[tmp_path / "ms.tif"], out="out.tif", options=opts)
    assert (job.pan, job.ms) == (str(tmp_path / "pan.tif"), (str(tmp_path / "ms.tif"),))
    back = pickle.loads(pickle.dumps(job))
    assert back == job and back is not job
    opts.method_options["alpha"] = 2.0  # the caller's options are not the job's
    assert job.options.method_options["alpha"] == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.out = "elsewhere.tif"  # type: ignore[misc]


def test_dict_round_trip_through_json(tmp_path: Path):
    job = FuseJob(pan="p.tif", ms=("b1.tif", "b2.tif"), out="o.tif", options=_rich_options())
    data = job.to_dict()
    line = json.dumps(data, allow_nan=False)  # strict JSON
    assert FuseJob.from_dict(json.loads(line)) == job
    assert set(data["options"]) == {f.name for f in dataclasses.fields(FuseOptions)}


def test_non_finite_nodata_travels_as_a_string():
    job = FuseJob(pan="p.tif", ms=("m.tif",), out="o.tif", options=FuseOptions(nodata=math.nan))
    data = json.loads(json.dumps(job.to_dict(), allow_nan=False))
    assert data["options"]["nodata"] == "nan"
    assert math.isnan(FuseJob.from_dict(data).options.nodata)
    inf = dataclasses.replace(job, options=FuseOptions(nodata=-math.inf))
    assert FuseJob.from_dict(inf.to_dict()).options.nodata == -math.inf


def test_missing_options_take_the_defaults():
    job = FuseJob.from_dict({"pan": "p.tif", "ms": ["m.tif"], "out": "o.tif"})
    assert job.options == FuseOptions()


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"pan": "p", "ms": ["m"], "out": "o", "priority": 1}, "priority"),
        ({"pan": "p", "ms": ["m"], "out": "o", "options": {"tiles": 256}}, "tiles"),
    ],
)
def test_unknown_keys_are_refused_by_name(data: dict, key: str):
    with pytest.raises(OptionError, match=f"'{key}'"):
        FuseJob.from_dict(data)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"tile": "512"}, "tile"),
        ({"overwrite": 1}, "overwrite"),
        ({"band_weights": [1, "a"]}, "band_weights"),
    ],
)
def test_values_of_the_wrong_type_are_refused_by_name(options: dict, key: str):
    with pytest.raises(OptionError, match=key):
        FuseJob.from_dict({"pan": "p", "ms": ["m"], "out": "o", "options": options})


def test_a_value_without_json_form_is_refused_by_name():
    job = FuseJob(
        pan="p", ms=("m",), out="o", options=FuseOptions(method_options={"window": (3, 3)})
    )
    with pytest.raises(OptionError, match="window"):
        job.to_dict()


def test_one_path_is_not_a_list_of_ms_files():
    with pytest.raises(OptionError, match="ms"):
        FuseJob(pan="p.tif", ms="m.tif", out="o.tif")  # type: ignore[arg-type]


def _read(path: str) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        meta = {
            "crs": ds.crs,
            "transform": ds.transform,
            "dtypes": ds.dtypes,
            "nodata": ds.nodata,
            "tags": ds.tags(),
            "descriptions": ds.descriptions,
        }
        return ds.read(), meta


@pytest.mark.parametrize("method", ["gsa", "brovey"])
def test_worker_output_is_bit_identical_to_in_process(make_scene, tmp_path, pool, method):
    sc = make_scene(pan_shape=(96, 112), seed=3)
    # small tiles: several per scene, so the tile engine's order matters; "u2" is
    # normalised by fuse_files, on the run's copy of the options only
    here = _job(sc.pan, sc.ms, tmp_path / "here.tif", method=method, tile=32, dtype="u2")
    there = dataclasses.replace(here, out=str(tmp_path / "there.tif"))
    local = run_job(here)
    remote = pool.submit(run_job, there).result(timeout=120)
    assert here.options.dtype == "u2"
    a, meta_a = _read(local.output)
    b, meta_b = _read(remote.output)
    assert meta_a["crs"] is not None
    assert meta_a == meta_b
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b)
    assert (remote.width, remote.height, remote.method) == (local.width, local.height, method)


def _failure(fn, *args) -> BaseException:
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - returned, then compared
        return exc
    raise AssertionError("the job did not fail")


def _remote_failure(pool: ProcessPoolExecutor, job: FuseJob) -> BaseException:
    exc = pool.submit(run_job, job).exception(timeout=120)
    assert exc is not None, "the job did not fail in the worker"
    return exc


@pytest.mark.parametrize(
    ("broken", "error"), [("missing_input", InputFileError), ("missing_folder", OutputError)]
)
def test_worker_failure_is_the_in_process_failure(make_scene, tmp_path, pool, broken, error):
    sc = make_scene(pan_shape=(64, 64))
    if broken == "missing_input":
        job = _job(str(tmp_path / "no_such_pan.tif"), sc.ms, tmp_path / "out.tif", method="brovey")
    else:
        job = _job(sc.pan, sc.ms, tmp_path / "no_such_folder" / "out.tif", method="brovey")
    local = _failure(run_job, job)
    remote = _remote_failure(pool, job)
    assert isinstance(local, error)
    assert type(remote) is type(local)
    assert str(remote) == str(local) and str(local)
    assert remote.exit_code == local.exit_code
    assert not Path(job.out).exists()


def _error_classes() -> list[type[PansharpError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, PansharpError)
    ]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_pansharp_error_pickles(cls: type[PansharpError]):
    exc = cls("something went wrong with --flag /some/path.tif")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert (str(back), back.args, back.exit_code) == (str(exc), exc.args, exc.exit_code)


def test_unknown_name_error_pickles():
    exc = errors.unknown_name("method", "nope", ["brovey", "gsa"], "-m")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is errors.UnknownNameError and str(back) == str(exc)
