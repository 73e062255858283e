"""Output refusals of the bad-input corpus: the output is an input, not a COG name, or
a creation option GDAL's COG driver does not know; and the checks behind them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import rasterio
import rasterio.shutil

from errors import OptionError, OutputError
from raster.creation_options import (
    check_creation_options,
    cog_driver_options,
    parse_option_list,
)
from raster.destination import check_destination, input_files, same_file
from raster.profiles import parse_creation_options
from tests.badinput import Case, refusal_test


def fuse(s, out: Path, *extra: str) -> list[str]:
    return ["fuse", s.pan, *s.ms, "-m", "brovey", "-o", str(out), "-q", *extra]


def out_is_ms(make_scene, tmp_path):
    s = make_scene(pan_shape=(64, 64))
    return fuse(s, Path(s.ms[0]), "--overwrite"), Path(s.ms[0])


def out_is_pan_without_overwrite(make_scene, tmp_path):
    s = make_scene(pan_shape=(64, 64))
    return fuse(s, Path(s.pan)), Path(s.pan)


def out_is_pan_through_symlink(make_scene, tmp_path):
    s = make_scene(pan_shape=(64, 64))
    link = tmp_path / "link.tif"
    link.symlink_to(s.pan)
    return fuse(s, link, "--overwrite"), link


def out_is_ms_through_hard_link(make_scene, tmp_path):
    s = make_scene(pan_shape=(64, 64))
    hard = tmp_path / "hard.tif"
    os.link(s.ms[0], hard)
    return fuse(s, hard, "--overwrite"), hard


def out_is_ms_spelled_otherwise(make_scene, tmp_path):
    s = make_scene(pan_shape=(64, 64))
    folder = Path(s.ms[0]).parent
    (folder / "sub").mkdir()
    out = folder / "sub" / ".." / "." / Path(s.ms[0]).name
    return fuse(s, out, "--overwrite"), out


def out_is_a_vrt_source(make_scene, tmp_path):
    s = make_scene(pan_shape=(64, 64))
    vrt = tmp_path / "ms.vrt"
    rasterio.shutil.copy(s.ms[0], vrt, driver="VRT")
    argv = ["fuse", s.pan, str(vrt), "-m", "brovey", "-o", s.ms[0], "-q", "--overwrite"]
    return argv, Path(s.ms[0])


def name(suffix: str):
    def build(make_scene, tmp_path):
        s = make_scene(pan_shape=(64, 64))
        out = tmp_path / f"out{suffix}"
        return fuse(s, out), out

    return build


def co(*items: str, profile: str | None = None):
    def build(make_scene, tmp_path):
        s = make_scene(pan_shape=(64, 64))
        out = tmp_path / "out.tif"
        extra = [x for item in items for x in ("--co", item)]
        if profile:
            extra += ["--profile", profile]
        return fuse(s, out, *extra), out

    return build


INPUT = ("-o/--output", "input", "choose another -o/--output")
CASES = [
    # the output is an input: refused whatever --overwrite says, before anything is written
    Case("output-is-the-ms", out_is_ms, 5, (*INPUT, "ms.tif")),
    Case("output-is-the-pan-no-overwrite", out_is_pan_without_overwrite, 5, (*INPUT, "pan.tif")),
    Case("output-is-the-pan-via-symlink", out_is_pan_through_symlink, 5, (*INPUT, "pan.tif")),
    Case("output-is-the-ms-via-hard-link", out_is_ms_through_hard_link, 5, (*INPUT, "ms.tif")),
    Case("output-is-the-ms-spelled-otherwise", out_is_ms_spelled_otherwise, 5, INPUT),
    Case("output-is-a-vrt-source", out_is_a_vrt_source, 5, (*INPUT, "ms.tif")),
    # a COG is a .tif/.tiff
    Case("output-png", name(".png"), 2, ("-o/--output", "out.png", "Cloud-Optimized", ".tif")),
    Case("output-vrt", name(".vrt"), 2, ("-o/--output", "out.vrt", ".tiff")),
    Case("output-no-suffix", name(""), 2, ("-o/--output", ".tif")),
    # creation options: GDAL's COG driver's keys and values
    Case("co-unknown-value", co("COMPRESS=NOPE"), 2, ("--co", "COMPRESS=NOPE", "DEFLATE", "ZSTD")),
    Case("co-unknown-value-lower-case", co("compress=nope"), 2, ("--co", "COMPRESS", "LZW")),
    Case("co-unknown-key", co("FOO=1"), 2, ("--co", "FOO", "valid keys", "BLOCKSIZE", "LEVEL")),
    Case("co-int-not-int", co("BLOCKSIZE=big"), 2, ("--co", "BLOCKSIZE=big", "integer")),
    Case("co-below-minimum", co("BLOCKSIZE=64"), 2, ("--co", "BLOCKSIZE=64", "128")),
    Case("co-blocksize-not-16", co("BLOCKSIZE=200"), 2, ("--co", "BLOCKSIZE=200", "16")),
    Case("co-negative-count", co("OVERVIEW_COUNT=-1"), 2, ("--co", "OVERVIEW_COUNT", "0")),
    Case("co-boolean", co("SPARSE_OK=maybe"), 2, ("--co", "SPARSE_OK=maybe", "YES")),
    Case("co-predictor", co("PREDICTOR=7"), 2, ("--co", "PREDICTOR=7", "FLOATING_POINT")),
    Case("co-deflate-level", co("LEVEL=13"), 2, ("--co", "LEVEL=13", "DEFLATE", "12")),
    Case("co-zstd-level", co("COMPRESS=ZSTD", "LEVEL=23"), 2, ("--co", "ZSTD", "22")),
    # LEVEL against the profile's codec: checked on the merged options, before writing
    Case("co-level-any-codec", co("LEVEL=30", profile="zstd"), 2, ("--co", "LEVEL=30", "22")),
    Case("co-level-of-profile", co("LEVEL=15"), 2, ("--co", "LEVEL=15", "DEFLATE", "12")),
    Case("co-threads", co("NUM_THREADS=many"), 2, ("--co", "NUM_THREADS=many", "ALL_CPUS")),
]
test_refused = refusal_test(CASES)


# -- the checks behind them ---------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    a = tmp_path / "a.tif"
    a.write_bytes(b"input")
    b = tmp_path / "b.tif"
    b.write_bytes(b"input")  # same bytes, another file
    return a, b


def test_same_file_by_inode_not_by_name_or_content(files, tmp_path):
    a, b = files
    (tmp_path / "d").mkdir()
    (tmp_path / "s.tif").symlink_to(a)
    os.link(a, tmp_path / "h.tif")
    assert same_file(tmp_path / "d" / ".." / "a.tif", a)
    assert same_file(tmp_path / "s.tif", a)
    assert same_file(tmp_path / "h.tif", a)
    assert not same_file(b, a)
    assert not same_file(tmp_path / "missing.tif", a)


def test_check_destination_refuses_an_input_even_with_overwrite(files, tmp_path):
    a, b = files
    with pytest.raises(OutputError, match="is the input") as info:
        check_destination(a, True, inputs=[b, a])
    assert info.value.exit_code == 5
    os.link(a, tmp_path / "h.tif")
    with pytest.raises(OutputError, match="same file as the input"):
        check_destination(tmp_path / "h.tif", True, inputs=[str(a)])
    # another file with the same bytes is not an input
    assert check_destination(b, True, inputs=[a]) == b
    assert a.read_bytes() == b.read_bytes() == b"input"


def test_vrt_sources_count_as_inputs(make_scene, tmp_path):
    s = make_scene(pan_shape=(64, 64))
    vrt = tmp_path / "ms.vrt"
    rasterio.shutil.copy(s.ms[0], vrt, driver="VRT")
    assert any(same_file(f, s.ms[0]) for f in input_files([str(vrt)]))
    assert input_files([s.pan, None]) == [s.pan]  # a GeoTIFF is not opened


def test_suffix_check_is_for_cogs_only(tmp_path):
    with pytest.raises(OptionError, match="Cloud-Optimized"):
        check_destination(tmp_path / "x.png", False, suffixes=(".tif", ".tiff"))
    assert check_destination(tmp_path / "X.TIFF", False, suffixes=(".tif", ".tiff"))
    assert check_destination(tmp_path / "w.safetensors", False)  # train's outputs


def test_driver_option_list_comes_from_gdal():
    known = cog_driver_options()
    assert known is not None, "GDAL's COG driver metadata is not reachable"
    assert {"COMPRESS", "BLOCKSIZE", "LEVEL", "PREDICTOR", "OVERVIEW_RESAMPLING"} <= set(known)
    assert {"DEFLATE", "ZSTD", "NONE"} <= set(known["COMPRESS"].values)
    assert known["BLOCKSIZE"].type == "int" and known["BLOCKSIZE"].minimum == 128
    assert known["PREDICTOR"].values["STANDARD"] == ("2",)


def test_parse_option_list_types_aliases_and_limits():
    xml = (
        "<CreationOptionList><Option name='K' type='string-select'><Value alias='1'>ONE</Value>"
        "<Value>TWO</Value></Option><Option name='n' type='int' min='2' max='5'/>"
        "</CreationOptionList>"
    )
    opts = parse_option_list(xml)
    assert opts["K"].values == {"ONE": ("1",), "TWO": ()}
    assert (opts["N"].type, opts["N"].minimum, opts["N"].maximum) == ("int", 2.0, 5.0)


def test_valid_options_pass():
    good = {
        "compress": "zstd",
        "LEVEL": "22",
        "PREDICTOR": "2",  # an alias
        "BLOCKSIZE": "256",
        "NUM_THREADS": "ALL_CPUS",
        "SPARSE_OK": "TRUE",
        "OVERVIEWS": "IGNORE_EXISTING",
        "BIGTIFF": "IF_SAFER",
    }
    check_creation_options(good)
    assert parse_creation_options(["COMPRESS=DEFLATE", "predictor=YES"]) == {
        "COMPRESS": "DEFLATE",
        "PREDICTOR": "YES",
    }
    for profile in ("deflate", "zstd", "lzw", "raw"):
        from raster.profiles import get_profile

        check_creation_options(get_profile(profile))


def test_parse_refuses_before_any_file_is_opened():
    with pytest.raises(OptionError, match=r"--co COMPRESS=NOPE.*valid values: NONE, LZW"):
        parse_creation_options(["COMPRESS=NOPE"])


def test_level_is_checked_against_the_profiles_codec(make_scene, tmp_path, capsys):
    """LEVEL=15 is a ZSTD level but not a DEFLATE one: the --co items alone cannot tell,
    the merged options can (the default profile is DEFLATE, see co-level-of-profile)."""
    from tests.cli import run_cli

    s = make_scene(pan_shape=(64, 64))
    out = tmp_path / "out.tif"
    code, _, err = run_cli(fuse(s, out, "--profile", "zstd", "--co", "LEVEL=15"), capsys)
    assert code == 0, err
    with rasterio.open(out) as ds:
        assert ds.compression.name == "zstd"
    with pytest.raises(OptionError, match="DEFLATE levels go from 1 to 12"):
        check_creation_options({"LEVEL": "15"}, compress="DEFLATE")
