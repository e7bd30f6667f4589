"""The output store (``featuremap.io.output``, ``layout``, ``ome``): layout, codecs, coordinates,
geometry and provenance attributes, consolidated and OME-NGFF metadata.

Stores are written by real jobs on an in-process Dask cluster into ``tmp_path`` (the ``finished``
fixture, ``conftest.py``) and checked against the in-memory oracle
(:func:`featuremap.engine.stack.apply_stack`) and the geometry formulas.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
import zarr.codecs
from support.stores import small_layout

from featuremap.engine.geometry import StackGeometry, output_centres
from featuremap.engine.layers import ConvLayer, PoolLayer
from featuremap.engine.stack import resolve_stack
from featuremap.io import FEATURES, MARKERS, OutputStore, create_output
from featuremap.jobs.run import run_layers
from featuremap.jobs.state import read_status


def test_layout_dims_chunks_and_codecs(finished):
    output, layers, _, expected = finished
    group = zarr.open_group(output, mode="r")
    assert sorted(name for name, _ in group.arrays()) == ["feature", FEATURES, "x", "y"]
    features = group[FEATURES]
    assert features.shape == expected.shape
    assert features.dtype == np.float32
    assert features.metadata.dimension_names == ("t", "feature", "y", "x")
    assert features.chunks == (1, 3, 5, 6)  # batch chunk of the input, all features, out_chunks
    codecs = [type(codec) for codec in features.metadata.codecs]
    assert zarr.codecs.Crc32cCodec in codecs
    assert zarr.codecs.BloscCodec in codecs
    assert np.isnan(features.metadata.fill_value)
    for index, layer in enumerate(layers):
        if layer.kind == "conv":
            np.testing.assert_array_equal(group[f"layers/{index}/weight"][...], layer.weight)
    np.testing.assert_array_equal(group["layers/0/bias"][...], layers[0].bias)
    assert "layers/2/bias" not in group  # the last conv has no bias
    # (t, y blocks, x blocks) of a 15 x 19 output, one done bit per block
    assert OutputStore.open(output).grid_shape == (2, 3, 4)
    assert group[MARKERS].dtype == np.uint8


def test_coordinates_are_geometry_centres(finished):
    output, layers, data, _ = finished
    _stack = resolve_stack(layers, data.shape[-2:], data.shape[-3])
    _, stacks, shapes = _stack.geometries, _stack.stacks, _stack.shapes
    centres_y, centres_x = output_centres(stacks[-1], shapes[-1][1:])
    group = zarr.open_group(output, mode="r")
    np.testing.assert_array_equal(group["y"][...], centres_y)
    np.testing.assert_array_equal(group["x"][...], centres_x)
    # by hand, DESIGN section 2: conv k(4, 3) "same" (lo 1, 1): rf (4, 3), start (0.5, 0);
    # avg pool 2: rf (5, 4), start (1, 0.5), jump 2; conv k3 s2 p1: rf (9, 8), start (1, 0.5), jump 4
    assert stacks[-1] == StackGeometry(receptive_field=(9, 8), jump=(4, 4), offset=(1.0, 0.5))


def test_geometry_attributes(finished):
    output, *_ = finished
    features = zarr.open_group(output, mode="r")[FEATURES]
    attrs = features.attrs["featuremap"]
    assert attrs["receptive_field"] == [9, 8]
    assert attrs["jump"] == [4, 4]
    assert attrs["offset"] == [1, 0.5]
    assert [layer["type"] for layer in attrs["layers"]] == ["conv", "pool", "conv"]
    first = attrs["layers"][0]
    assert first["padding"] == [[1, 2], [1, 1]]
    assert first["padding_spec"] == "same"
    assert first["kernel_size"] == [4, 3]
    assert first["activation"] == "tanh"
    assert first["bank"] == {"type": "random", "seed": 1}
    assert attrs["layers"][2]["stride"] == [2, 2]
    assert attrs["layers"][2]["padding_mode"] == "replicate"


def test_single_layer_carries_its_own_parameters(tmp_path, input_store, client):
    rng = np.random.default_rng(3)
    source = input_store(rng.random((40, 50), dtype=np.float32), (16, 16))
    layer = ConvLayer.create(
        rng.standard_normal((2, 1, 3, 5)), stride=(1, 2), dilation=2, padding=(2, 4)
    )
    run_layers([layer], input=source, output=str(tmp_path / "out.zarr"), client=client)
    attrs = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")[FEATURES].attrs["featuremap"]
    assert attrs["kernel_size"] == [3, 5]
    assert attrs["stride"] == [1, 2]
    assert attrs["dilation"] == [2, 2]
    assert attrs["padding"] == [[2, 2], [4, 4]]
    assert attrs["receptive_field"] == [5, 9]
    assert attrs["jump"] == [1, 2]


def test_root_attributes_provenance_and_status(finished):
    output, *_ = finished
    attrs = zarr.open_group(output, mode="r").attrs["featuremap"]
    assert attrs["status"] == "complete"
    assert attrs["blocks_done"] == attrs["blocks_total"] == 24
    assert len(attrs["fingerprint"]) == 64
    assert attrs["finished"] >= attrs["started"]
    assert set(attrs["versions"]) == {"featuremap", "dask", "distributed", "zarr", "numpy"}
    identity = attrs["input"]
    assert identity["shape"] == [2, 2, 61, 75]
    assert identity["chunks"] == [1, 2, 20, 32]
    assert identity["dtype"] == "float32"
    assert len(identity["metadata_sha256"]) == 64
    assert read_status(output)["status"] == "complete"


def test_xarray_opens_without_warnings_with_coordinates(finished):
    output, *_, expected = finished
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = xr.open_zarr(output)
    features = dataset[FEATURES]
    assert features.dims == ("t", "feature", "y", "x")
    np.testing.assert_allclose(features.values, expected, rtol=1e-5, atol=1e-5)
    assert float(dataset["y"][1] - dataset["y"][0]) == 4.0
    assert float(dataset["x"][0]) == 0.5


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
    assert scale.scale == [1.0, 1.0, 4.0, 4.0]
    assert translation.translation == [0.0, 0.0, 1.0, 0.5]


def test_ome_left_out_when_dims_cannot_be_expressed(tmp_path):
    layer = PoolLayer.create("max", 2)
    store = create_output(
        str(tmp_path / "two.zarr"),
        layout=small_layout((2, 3)),
        geometry_attrs={"layers": [layer.to_dict()]},
        weights=[],
        root_attrs={},
        job_attrs={},
    )
    assert "ome" not in store.group.attrs
    store = create_output(
        str(tmp_path / "none.zarr"),
        layout=small_layout(()),
        geometry_attrs={"layers": [layer.to_dict()]},
        weights=[],
        root_attrs={},
        job_attrs={},
    )
    assert [axis["type"] for axis in store.group.attrs["ome"]["multiscales"][0]["axes"]] == [
        "channel",
        "space",
        "space",
    ]
