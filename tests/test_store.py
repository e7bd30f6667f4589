"""Output store layout, metadata and reading; input opening and its errors.

Stores are written by real jobs on an in-process Dask cluster into ``tmp_path`` and checked
against the in-memory oracle (:func:`featuremap.layers.apply_stack`) and the geometry formulas.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
import zarr.codecs
from distributed import Client, LocalCluster

from featuremap import _jobs
from featuremap._runner import run_layers
from featuremap._store import (
    FEATURES,
    OutputLayout,
    create_output,
    open_features,
    open_input,
    read_status,
)
from featuremap.errors import InputError
from featuremap.geometry import StackGeometry, output_centres
from featuremap.layers import ConvLayer, PoolLayer, apply_stack, stack_geometry


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as active:
            yield active


def _layers(rng: np.random.Generator) -> list:
    return [
        ConvLayer.create(rng.standard_normal((5, 2, 4, 3)), rng.standard_normal(5), padding="same",
                         activation="tanh", bank={"type": "random", "seed": 1}),
        PoolLayer.create("avg", 2),
        ConvLayer.create(rng.standard_normal((3, 5, 3, 3)), stride=2, padding=1, padding_mode="replicate"),
    ]


def _input(path: Path, data: np.ndarray, chunks: tuple, **kwargs) -> str:
    zarr.create_array(str(path), data=data, chunks=chunks, **kwargs)
    return str(path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, client):
    """A completed 3-layer job over a (time, channel, y, x) input, and its oracle."""
    rng = np.random.default_rng(11)
    tmp = tmp_path_factory.mktemp("store")
    data = rng.random((2, 2, 61, 75), dtype=np.float32)
    source = _input(tmp / "in.zarr", data, (1, 2, 20, 32), dimension_names=["t", "c", "y", "x"])
    layers = _layers(rng)
    output = str(tmp / "out.zarr")
    run_layers(layers, input=source, output=output, out_chunks=(5, 6), client=client)
    return output, layers, data, apply_stack(layers, data)


def test_layout_dims_chunks_and_codecs(finished):
    output, layers, data, expected = finished
    group = zarr.open_group(output, mode="r")
    assert sorted(name for name, _ in group.arrays()) == ["feature", FEATURES, "x", "y"]
    features = group[FEATURES]
    assert features.shape == expected.shape and features.dtype == np.float32
    assert features.metadata.dimension_names == ("t", "feature", "y", "x")
    assert features.chunks == (1, 3, 5, 6)  # batch chunk of the input, all features, out_chunks
    codecs = [type(codec) for codec in features.metadata.codecs]
    assert zarr.codecs.Crc32cCodec in codecs and zarr.codecs.BloscCodec in codecs
    assert np.isnan(features.metadata.fill_value)
    for index, layer in enumerate(layers):
        if layer.kind == "conv":
            np.testing.assert_array_equal(group[f"layers/{index}/weight"][...], layer.weight)
    np.testing.assert_array_equal(group["layers/0/bias"][...], layers[0].bias)
    assert "layers/2/bias" not in group  # the last conv has no bias
    assert group[_jobs.MARKERS].shape == (2, 3, 4)  # (t, y blocks, x blocks) of a 15 x 19 output


def test_coordinates_are_geometry_centres(finished):
    output, layers, data, expected = finished
    _, stacks, shapes = stack_geometry(layers, data.shape[-2:], data.shape[-3])
    centres_y, centres_x = output_centres(stacks[-1], shapes[-1][1:])
    group = zarr.open_group(output, mode="r")
    np.testing.assert_array_equal(group["y"][...], centres_y)
    np.testing.assert_array_equal(group["x"][...], centres_x)
    # by hand, DESIGN section 2: conv k(4, 3) "same" (lo 1, 1): rf (4, 3), start (0.5, 0);
    # avg pool 2: rf (5, 4), start (1, 0.5), jump 2; conv k3 s2 p1: rf (9, 8), start (1, 0.5), jump 4
    assert stacks[-1] == StackGeometry(receptive_field=(9, 8), jump=(4, 4), offset=(1.0, 0.5))


def test_geometry_attributes(finished):
    output, layers, data, expected = finished
    features = zarr.open_group(output, mode="r")[FEATURES]
    attrs = features.attrs["featuremap"]
    assert attrs["receptive_field"] == [9, 8] and attrs["jump"] == [4, 4]
    assert attrs["offset"] == [1, 0.5]
    assert [layer["type"] for layer in attrs["layers"]] == ["conv", "pool", "conv"]
    first = attrs["layers"][0]
    assert first["padding"] == [[1, 2], [1, 1]] and first["padding_spec"] == "same"
    assert first["kernel_size"] == [4, 3] and first["activation"] == "tanh"
    assert first["bank"] == {"type": "random", "seed": 1}
    assert attrs["layers"][2]["stride"] == [2, 2] and attrs["layers"][2]["padding_mode"] == "replicate"


def test_single_layer_carries_its_own_parameters(tmp_path, client):
    rng = np.random.default_rng(3)
    source = _input(tmp_path / "in.zarr", rng.random((40, 50), dtype=np.float32), (16, 16))
    layer = ConvLayer.create(rng.standard_normal((2, 1, 3, 5)), stride=(1, 2), dilation=2, padding=(2, 4))
    run_layers([layer], input=source, output=str(tmp_path / "out.zarr"), client=client)
    attrs = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")[FEATURES].attrs["featuremap"]
    assert attrs["kernel_size"] == [3, 5] and attrs["stride"] == [1, 2]
    assert attrs["dilation"] == [2, 2] and attrs["padding"] == [[2, 2], [4, 4]]
    assert attrs["receptive_field"] == [5, 9] and attrs["jump"] == [1, 2]


def test_root_attributes_provenance_and_status(finished):
    output, *_ = finished
    attrs = zarr.open_group(output, mode="r").attrs["featuremap"]
    assert attrs["status"] == "complete" and attrs["blocks_done"] == attrs["blocks_total"] == 24
    assert len(attrs["fingerprint"]) == 64 and attrs["finished"] >= attrs["started"]
    assert set(attrs["versions"]) == {"featuremap", "dask", "distributed", "zarr", "numpy"}
    identity = attrs["input"]
    assert identity["shape"] == [2, 2, 61, 75] and identity["chunks"] == [1, 2, 20, 32]
    assert identity["dtype"] == "float32" and len(identity["metadata_sha256"]) == 64
    assert read_status(output)["status"] == "complete"


def test_xarray_opens_without_warnings_with_coordinates(finished):
    output, layers, data, expected = finished
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = xr.open_zarr(output)
    features = dataset[FEATURES]
    assert features.dims == ("t", "feature", "y", "x")
    np.testing.assert_allclose(features.values, expected, rtol=1e-5, atol=1e-5)
    assert float(dataset["y"][1] - dataset["y"][0]) == 4.0 and float(dataset["x"][0]) == 0.5


def test_consolidated_metadata_written(finished):
    output, *_ = finished
    root = json.loads((Path(output) / "zarr.json").read_text())
    assert set(root["consolidated_metadata"]["metadata"]) >= {FEATURES, "y", "x", "_job/done"}


def test_ome_ngff_metadata_validates(finished):
    from ome_zarr_models.v05.image import Image

    output, *_ = finished
    image = Image.from_zarr(zarr.open_group(output, mode="r"))
    multiscale = image.attributes.ome.multiscales[0]
    assert [axis.type for axis in multiscale.axes] == ["time", "channel", "space", "space"]
    scale, translation = multiscale.datasets[0].coordinateTransformations
    assert scale.scale == [1.0, 1.0, 4.0, 4.0] and translation.translation == [0.0, 0.0, 1.0, 0.5]


def _layout(batch: tuple[int, ...]) -> OutputLayout:
    return OutputLayout(
        batch_dims=tuple(f"dim_{i}" for i in range(len(batch))), shape=(*batch, 2, 8, 8),
        chunks=(*(1,) * len(batch), 2, 4, 4), stack=StackGeometry((3, 3), (1, 1), (1.0, 1.0)),
    )


def test_ome_left_out_when_dims_cannot_be_expressed(tmp_path):
    layer = PoolLayer.create("max", 2)
    group = create_output(str(tmp_path / "two.zarr"), layout=_layout((2, 3)), layers=[layer],
                          layer_dicts=[layer.to_dict()], root_attrs={})
    assert "ome" not in group.attrs
    group = create_output(str(tmp_path / "none.zarr"), layout=_layout(()), layers=[layer],
                          layer_dicts=[layer.to_dict()], root_attrs={})
    assert [axis["type"] for axis in group.attrs["ome"]["multiscales"][0]["axes"]] == [
        "channel", "space", "space"]


def test_open_features_api(finished):
    output, layers, data, expected = finished
    store = open_features(output)
    np.testing.assert_allclose(store.data.compute(), expected, rtol=1e-5, atol=1e-5)
    assert store.geometry == StackGeometry((9, 8), (4, 4), (1.0, 0.5))
    assert len(store.layers) == 3 and store.attrs["status"] == "complete"
    assert store.status["blocks_done"] == 24
    weight, bias = store.weights(0)
    np.testing.assert_array_equal(weight, layers[0].weight)
    np.testing.assert_array_equal(bias, layers[0].bias)
    assert store.weights(2)[1] is None
    with pytest.raises(InputError, match=r"layer 1 has no weights; conv layers are \[0, 2\]"):
        store.weights(1)
    array = store.to_xarray()
    assert array.dims == ("t", "feature", "y", "x")
    np.testing.assert_array_equal(array["x"].values, 0.5 + 4 * np.arange(expected.shape[-1]))


def test_open_features_refuses_other_paths(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_features(str(tmp_path / "missing.zarr"))
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(InputError, match="not a featuremap output store"):
        open_features(str(tmp_path / "plain.zarr"))


def test_corrupted_chunk_is_an_error_on_read(tmp_path, client):
    rng = np.random.default_rng(5)
    source = _input(tmp_path / "in.zarr", rng.random((1, 32, 32), dtype=np.float32), (1, 32, 32))
    output = tmp_path / "out.zarr"
    run_layers([PoolLayer.create("max", 2)], input=source, output=str(output), client=client)
    chunk = output / FEATURES / "c" / "0" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(Exception, match="(?i)checksum|crc"):
        open_features(str(output)).data.compute()


def test_status_of_an_unfinished_store(tmp_path):
    store = str(tmp_path / "job.zarr")
    layer = PoolLayer.create("max", 2)
    group = create_output(store, layout=_layout((3,)), layers=[layer], layer_dicts=[layer.to_dict()],
                          root_attrs={})
    owner = _jobs.new_owner()
    _jobs.start_job(group, owner=owner, fingerprint="f" * 64, blocks_total=12)
    assert read_status(store)["status"] == "running" and read_status(store)["blocks_done"] == 0
    group[_jobs.MARKERS][1, 0, 1] = 1
    assert read_status(store)["blocks_done"] == 1
    group["_job"].attrs["heartbeat"] = time.time() - 2 * _jobs.HEARTBEAT_TIMEOUT_S
    status = read_status(store)
    assert status["status"] == "interrupted" and status["blocks_total"] == 12
    # a missing chunk reads as NaN: "not computed", never zeros
    assert np.isnan(open_features(store).data[0].compute()).all()


# ----------------------------------------------------------------------------------------- input


def test_open_input_axes(tmp_path):
    rng = np.random.default_rng(0)
    plain = open_input(_input(tmp_path / "2d.zarr", rng.random((9, 7)), (4, 4)))
    assert plain.channel_axis is None and plain.channels == 1 and plain.batch_shape == ()
    assert plain.to_dask((4, 4)).shape == (1, 9, 7)
    stacked = open_input(_input(tmp_path / "4d.zarr", rng.random((2, 3, 9, 7)), (1, 3, 4, 4)))
    assert stacked.channel_axis == -3 and stacked.batch_shape == (2,) and stacked.batch_dims == ("dim_0",)
    named = open_input(_input(tmp_path / "named.zarr", rng.random((3, 2, 9, 7)), (3, 1, 9, 7),
                              dimension_names=["c", "t", "y", "x"]))
    assert named.channel_axis == -4 and named.channels == 3 and named.batch_dims == ("t",)
    moved = named.to_dask((9, 7))
    np.testing.assert_array_equal(moved.compute(), np.moveaxis(named.array[...], 0, 1))
    assert open_input(str(tmp_path / "4d.zarr"), channel_axis=0).channels == 2


def test_open_input_format_2_group(tmp_path):
    group = zarr.open_group(str(tmp_path / "v2.zarr"), mode="w", zarr_format=2)
    array = group.create_array("images", shape=(4, 10, 12), chunks=(2, 5, 6), dtype="uint16")
    array.attrs["_ARRAY_DIMENSIONS"] = ["band", "y", "x"]
    array[...] = 7
    source = open_input(str(tmp_path / "v2.zarr"), "images")
    assert source.channels == 4 and source.dims == ("band", "y", "x")
    assert source.identity()["dtype"] == "uint16"


@pytest.mark.parametrize(
    ("make", "array", "message"),
    [
        (lambda p: None, None, "does not exist"),
        (lambda p: p.mkdir(), None, "is not a Zarr array or group"),
        (lambda p: zarr.open_group(str(p), mode="w").create_array("a", shape=(4, 4), dtype="f4"),
         None, "is a group; choose an array .* \\(it holds: a\\)"),
        (lambda p: zarr.open_group(str(p), mode="w").create_array("a", shape=(4, 4), dtype="f4"),
         "b", "'b' is not in the group .* \\(arrays there: a\\)"),
        (lambda p: zarr.create_array(str(p), shape=(4, 4), dtype="f4"), "a", "is itself an array"),
        (lambda p: zarr.create_array(str(p), shape=(8,), dtype="f4"), None, "at least 2 dimensions"),
        (lambda p: zarr.create_array(str(p), shape=(0, 4), dtype="f4"), None, "is empty"),
        (lambda p: zarr.create_array(str(p), shape=(4, 4), dtype="complex64"), None, "must hold numbers"),
    ],
)
def test_open_input_errors(tmp_path, make, array, message):
    path = tmp_path / "input.zarr"
    make(path)
    with pytest.raises(InputError, match=message):
        open_input(str(path), array)


@pytest.mark.parametrize("channel_axis", [-2, 2, 5, "0"])
def test_open_input_bad_channel_axis(tmp_path, channel_axis):
    source = _input(tmp_path / "in.zarr", np.zeros((2, 3, 4, 4), np.float32), (1, 1, 4, 4))
    with pytest.raises(InputError, match="channel_axis must be an integer in \\[-4, -3\\]"):
        open_input(source, channel_axis=channel_axis)
