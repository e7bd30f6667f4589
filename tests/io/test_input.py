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


# --- bioformats2raw layouts: a root of image series 0/, 1/, ... ------------------------------


def _series_root(path, version):
    """A bioformats2raw root (NGFF ``version``) with two series of different sizes."""
    import warnings

    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt = FormatV05() if version == "0.5" else FormatV04()
    root = zarr.open_group(str(path), mode="w", zarr_format=3 if version == "0.5" else 2)
    layout = {"bioformats2raw.layout": 3}
    root.attrs.update({"ome": {"version": "0.5", **layout}} if version == "0.5" else layout)
    for series, size in enumerate((24, 16)):
        data = np.full((2, size, size), series, dtype=np.uint16)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_image(data, root.create_group(str(series)), axes="cyx", fmt=fmt)
    return str(path)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_a_bioformats2raw_layout_reads_series_0_or_the_one_asked(tmp_path, version):
    root = _series_root(tmp_path / "x.ome.zarr", version)
    first = open_input(root)
    assert (first.name, first.shape, first.axes.source) == ("0/s0", (2, 24, 24), "OME-NGFF")
    second = open_input(root, selection=InputSelection(series=1))
    assert (second.name, second.shape) == ("1/s0", (2, 16, 16))
    assert int(second.to_dask((16, 16))[0, 0, 0].compute()) == 1
    with pytest.raises(InputError, match=r"series 0\.\.1, not series 2; .*x\.ome\.zarr/0"):
        open_input(root, selection=InputSelection(series=2))


def test_series_of_a_plain_store_and_a_group_of_images_are_one_line(tmp_path, input_store):
    with pytest.raises(InputError, match="is not a bioformats2raw layout"):
        open_input(input_store(np.zeros((8, 8))), selection=InputSelection(series=0))
    root = _series_root(tmp_path / "y.ome.zarr", "0.5")
    zarr.open_group(root, mode="a").attrs.clear()  # no layout mark: just a group of images
    with pytest.raises(InputError, match=r"holds OME-Zarr images \(0, 1\).*y\.ome\.zarr/0"):
        open_input(root)
