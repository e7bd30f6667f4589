"""The axes model (featuremap.io.axes): sources in order, the vocabulary, refusals."""

from __future__ import annotations

import pytest

from featuremap.errors import InputError
from featuremap.io.axes import VOCABULARY, parse_axes_spec, resolve_axes


def kinds(axes):
    return [axis.kind for axis in axes.axes]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["t", "c", "z", "y", "x"], ["t", "c", "z", "y", "x"]),
        (["time", "lat", "lon"], ["t", "y", "x"]),
        (["n", "y", "x", "c"], ["n", "y", "x", "c"]),
        (["sample", "row", "col", "band"], ["n", "y", "x", "c"]),
        (["Time", "Latitude", "Longitude"], ["t", "y", "x"]),  # case-insensitive
        (["image", "channel", "y", "x"], ["n", "c", "y", "x"]),
    ],
)
def test_dimension_names_through_the_vocabulary(names, expected):
    axes = resolve_axes(len(names), names=names)
    assert kinds(axes) == expected
    assert axes.source == "dimension names"
    assert axes.names == tuple(names)


def test_a_name_outside_the_vocabulary_is_refused_naming_it_and_input_axes():
    with pytest.raises(InputError) as caught:
        resolve_axes(3, names=["species", "y", "x"])
    message = str(caught.value)
    assert "'species'" in message
    assert "input.axes" in message
    assert "\n" not in message


def test_unnamed_arrays_keep_the_positional_rule():
    assert kinds(resolve_axes(2)) == ["y", "x"]
    assert kinds(resolve_axes(4)) == ["batch", "c", "y", "x"]
    # xarray's placeholder names are no names
    assert kinds(resolve_axes(3, names=["dim_0", "dim_1", "dim_2"])) == ["c", "y", "x"]
    assert resolve_axes(4).source == "positional"


def test_the_pipeline_axes_come_first():
    assert kinds(resolve_axes(4, spec=parse_axes_spec("nyxc"), names=["a", "b", "c", "d"])) == [
        "n",
        "y",
        "x",
        "c",
    ]
    spec = parse_axes_spec({"member": "batch", "lat": "y", "lon": "x"})
    axes = resolve_axes(3, spec=spec, names=["member", "lat", "lon"])
    assert kinds(axes) == ["batch", "y", "x"]
    assert axes.source == "input.axes"
    # mapping for foreign names, the rest through the vocabulary
    mixed = resolve_axes(4, spec=parse_axes_spec({"wl": "c"}), names=["time", "wl", "y", "x"])
    assert kinds(mixed) == ["t", "c", "y", "x"]


def test_ome_axes_last_two_space_axes_are_y_x():
    ome = [
        {"name": "t", "type": "time"},
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space"},
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space"},
    ]
    axes = resolve_axes(5, ome_axes=ome, names=["a", "b", "c", "d", "e"])
    assert kinds(axes) == ["t", "c", "z", "y", "x"]
    assert axes.source == "OME-NGFF"
    assert axes.order == (0, 2, 1, 3, 4)  # (t, z, c, y, x): non-space batch first, then z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tczyx", ("t", "c", "z", "y", "x")),
        ("NYXC", ("n", "y", "x", "c")),
        ("time,band,lat,lon", ("t", "c", "y", "x")),
        ("lat=y,lon=x,band=c", {"lat": "y", "lon": "x", "band": "c"}),
    ],
)
def test_spec_forms(text, expected):
    assert parse_axes_spec(text) == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("tqyx", "letters featuremap does not know"),
        (["time", "wavelet", "y", "x"], r"axes\[1\]"),
        ({"lat": "up"}, "axes.lat"),
        (3, "must be a string"),
    ],
)
def test_spec_refusals(value, match):
    with pytest.raises(InputError, match=match):
        parse_axes_spec(value)


@pytest.mark.parametrize(
    ("ndim", "kwargs", "match"),
    [
        (3, {"spec": ("c", "y", "y")}, "several axes are y"),
        (3, {"spec": ("c", "x", "n")}, "no axis is y"),
        (4, {"spec": ("y", "x")}, "names 2 axes but the input has 4"),
        (3, {"spec": {"lat": "y"}, "names": ["a", "b", "c"]}, "does not have"),
        (3, {"spec": ("c", "y", "x"), "channel_axis": -3}, "not both"),
    ],
)
def test_resolution_refusals(ndim, kwargs, match):
    with pytest.raises(InputError, match=match):
        resolve_axes(ndim, **kwargs)


def test_vocabulary_covers_the_documented_names():
    for name in (
        "y",
        "lat",
        "latitude",
        "row",
        "x",
        "lon",
        "longitude",
        "col",
        "c",
        "channel",
        "band",
        "t",
        "time",
        "z",
        "n",
        "batch",
        "sample",
        "image",
    ):
        assert name in VOCABULARY


def test_a_3d_stack_makes_z_spatial():
    """The input's z (NGFF's third-last space axis, the last axis of kind z) becomes spatial;
    the positional rule reads (..., C, D, H, W); an input without z is refused in one line."""
    ome = [
        {"name": n, "type": t}
        for n, t in (("c", "channel"), ("z", "space"), ("y", "space"), ("x", "space"))
    ]
    axes = resolve_axes(4, ome_axes=ome, spatial_ndim=3)
    assert (axes.spatial, axes.batch, axes.channel, axes.order) == ((1, 2, 3), (), 0, (0, 1, 2, 3))
    flat = resolve_axes(4, ome_axes=ome)
    assert (flat.spatial, flat.batch) == ((2, 3), (1,))
    positional = resolve_axes(5, spatial_ndim=3)
    assert [a.kind for a in positional.axes] == ["batch", "c", "z", "y", "x"]
    assert resolve_axes(3, spatial_ndim=3).spatial == (0, 1, 2)
    timed = resolve_axes(4, spec=("t", "z", "y", "x"), spatial_ndim=3)
    assert (timed.batch, timed.spatial) == ((0,), (1, 2, 3))
    with pytest.raises(InputError, match="have no z axis; say which axis is z"):
        resolve_axes(3, spec=("c", "y", "x"), spatial_ndim=3)
