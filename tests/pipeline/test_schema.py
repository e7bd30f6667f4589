"""The pipeline file's schema helpers: places in errors, paths, regions, channels, levels."""

from __future__ import annotations

from pathlib import Path

import pytest

from featuremap.errors import InputError, command_line_names
from featuremap.pipeline.schema import (
    field_value,
    mapping,
    parse_channels,
    parse_level,
    parse_region,
    resolve_path,
)


def test_mapping_names_unknown_and_missing_keys_with_their_place():
    assert mapping({"a": 1}, "input", ("a", "b")) == {"a": 1}
    with pytest.raises(InputError, match=r"input: unknown key 'sotre'.*did you mean 'store'"):
        mapping({"sotre": 1}, "input", ("store", "array"))
    with pytest.raises(InputError, match=r"layers\[0\].pool.type: missing"):
        mapping({}, "layers[0].pool", ("type",), required=("type",))


def test_field_value_puts_the_place_in_front():
    def parse(value):
        raise InputError("stride must be positive")

    with pytest.raises(InputError, match=r"^layers\[2\].conv.stride: must be positive$"):
        field_value("layers[2].conv", "stride", parse, -1)


def test_resolve_path(tmp_path):
    assert resolve_path("in.zarr", tmp_path) == str(tmp_path / "in.zarr")
    assert resolve_path("file:///data/in.zarr", tmp_path) == "/data/in.zarr"
    assert resolve_path("s3://bucket/in.zarr", tmp_path) == "s3://bucket/in.zarr"
    assert resolve_path("a/../b.zarr", Path("/x")) == "/x/b.zarr"


def test_regions_from_the_file_and_the_command_line():
    assert parse_region({"z": [10, 20], "y": [0, None]}) == {"z": (10, 20), "y": (0, None)}
    assert parse_region({"t": 3}) == {"t": (3, 4)}
    assert parse_region("z=10:20,y=0:4096") == {"z": (10, 20), "y": (0, 4096)}
    with pytest.raises(InputError, match="mapping of axis") as python:
        parse_region([])
    assert "--region" not in str(python.value)
    with command_line_names(), pytest.raises(InputError, match="--region z=10:20"):
        parse_region([])


def test_channels_and_levels():
    assert parse_channels([0, 2]) == (0, 2)
    assert parse_channels("DAPI,GFP") == ("DAPI", "GFP")
    assert parse_level(0) == 0
    assert parse_level("s1") == "s1"
    with pytest.raises(InputError):
        parse_level(-1)
