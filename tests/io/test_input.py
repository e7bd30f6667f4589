"""Opening inputs (``featuremap.io.input``): axes, channel axis, Zarr format 2 groups and every
way an input can be wrong."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from featuremap.errors import InputError
from featuremap.io import InputSelection, open_input


def test_open_input_axes(tmp_path, input_store):
    rng = np.random.default_rng(0)
    plain = open_input(input_store(rng.random((9, 7)), (4, 4), name="2d.zarr"))
    assert plain.axes.channel is None
    assert plain.channel_count == 1
    assert plain.batch_shape == ()
    assert plain.to_dask((4, 4)).shape == (1, 9, 7)
    stacked = open_input(input_store(rng.random((2, 3, 9, 7)), (1, 3, 4, 4), name="4d.zarr"))
    assert stacked.axes.channel == 1  # -3 of 4 axes
    assert stacked.batch_shape == (2,)
    assert stacked.batch_dims == ("dim_0",)
    named = open_input(
        input_store(
            rng.random((3, 2, 9, 7)),
            (3, 1, 9, 7),
            dimension_names=["c", "t", "y", "x"],
            name="named.zarr",
        )
    )
    assert named.axes.channel == 0  # -4 of 4 axes
    assert named.channel_count == 3
    assert named.batch_dims == ("t",)
    moved = named.to_dask((9, 7))
    stored = zarr.open_array(str(tmp_path / "named.zarr"))[...]
    np.testing.assert_array_equal(moved.compute(), np.moveaxis(stored, 0, 1))
    by_index = open_input(str(tmp_path / "4d.zarr"), selection=InputSelection(channel_axis=0))
    assert by_index.channel_count == 2


def test_open_input_format_2_group(tmp_path):
    group = zarr.open_group(str(tmp_path / "v2.zarr"), mode="w", zarr_format=2)
    array = group.create_array("images", shape=(4, 10, 12), chunks=(2, 5, 6), dtype="uint16")
    array.attrs["_ARRAY_DIMENSIONS"] = ["band", "y", "x"]
    array[...] = 7
    source = open_input(str(tmp_path / "v2.zarr"), "images")
    assert source.channel_count == 4
    assert source.axes.names == ("band", "y", "x")
    assert source.identity()["dtype"] == "uint16"


@pytest.mark.parametrize(
    ("make", "array", "message"),
    [
        (lambda p: None, None, "does not exist"),
        (lambda p: p.mkdir(), None, "is not a Zarr array or group"),
        (
            lambda p: [
                zarr.open_group(str(p), mode="a").create_array(name, shape=(4, 4), dtype="f4")
                for name in ("a", "b")
            ],
            None,
            "is a group; choose an array .* \\(it holds: a, b\\)",
        ),
        (
            lambda p: zarr.open_group(str(p), mode="w").create_array("a", shape=(4, 4), dtype="f4"),
            "b",
            "'b' is not in the group .* \\(arrays there: a\\)",
        ),
        (lambda p: zarr.create_array(str(p), shape=(4, 4), dtype="f4"), "a", "is itself an array"),
        (
            lambda p: zarr.create_array(str(p), shape=(8,), dtype="f4"),
            None,
            "at least 2 dimensions",
        ),
        (lambda p: zarr.create_array(str(p), shape=(0, 4), dtype="f4"), None, "is empty"),
        (
            lambda p: zarr.create_array(str(p), shape=(4, 4), dtype="complex64"),
            None,
            "must hold numbers",
        ),
    ],
)
def test_open_input_errors(tmp_path, make, array, message):
    path = tmp_path / "input.zarr"
    make(path)
    with pytest.raises(InputError, match=message):
        open_input(str(path), array)


@pytest.mark.parametrize("channel_axis", [-2, 2, 5, "0"])
def test_open_input_bad_channel_axis(tmp_path, input_store, channel_axis):
    source = input_store(np.zeros((2, 3, 4, 4), np.float32), (1, 1, 4, 4))
    with pytest.raises(InputError, match="channel_axis must be an integer in \\[-4, -3\\]"):
        open_input(source, selection=InputSelection(channel_axis=channel_axis))
