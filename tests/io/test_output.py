"""The output store (``featuremap.io.output``): geometry and provenance attributes, consolidated
metadata, xarray's view (the layout is ``test_layout.py``, the coordinates ``test_placement.py``,
the OME-NGFF metadata ``test_ome.py``).

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

from featuremap.engine.layers import ConvLayer
from featuremap.io import FEATURES
from featuremap.jobs.run import run_layers
from featuremap.jobs.state import read_status


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
    assert features.dims == ("t", "c", "y", "x")
    np.testing.assert_allclose(features.values, expected, rtol=1e-5, atol=1e-5)
    assert float(dataset["y"][1] - dataset["y"][0]) == 4.0
    assert float(dataset["x"][0]) == 0.5


def test_consolidated_metadata_written(finished):
    output, *_ = finished
    root = json.loads((Path(output) / "zarr.json").read_text())
    assert set(root["consolidated_metadata"]["metadata"]) >= {FEATURES, "y", "x", "_job/done"}
