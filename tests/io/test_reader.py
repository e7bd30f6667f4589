"""Reading output stores (``featuremap.io.reader``): ``open_features``, weights, xarray, refusals
and checksums."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from featuremap.engine.geometry import StackGeometry
from featuremap.engine.layers import PoolLayer
from featuremap.errors import InputError
from featuremap.io import FEATURES, open_features
from featuremap.jobs.run import run_layers
from featuremap.jobs.state import read_status


def test_open_features_api(finished):
    output, layers, _, expected = finished
    store = open_features(output)
    np.testing.assert_allclose(store.data.compute(), expected, rtol=1e-5, atol=1e-5)
    assert store.geometry == StackGeometry((9, 8), (4, 4), (1.0, 0.5))
    assert len(store.layers) == 3
    assert store.attrs["status"] == "complete"
    assert read_status(output)["blocks_done"] == 24
    weight, bias = store.weights(0)
    np.testing.assert_array_equal(weight, layers[0].weight)
    np.testing.assert_array_equal(bias, layers[0].bias)
    assert store.weights(2)[1] is None
    with pytest.raises(InputError, match=r"layer 1 has no weights; conv layers are \[0, 2\]"):
        store.weights(1)
    array = store.to_xarray()
    assert array.dims == ("t", "c", "y", "x")
    np.testing.assert_array_equal(array["x"].values, 0.5 + 4 * np.arange(expected.shape[-1]))


def test_open_features_refuses_other_paths(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_features(str(tmp_path / "missing.zarr"))
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(InputError, match="not a featuremap output store"):
        open_features(str(tmp_path / "plain.zarr"))


def test_corrupted_chunk_is_an_error_on_read(tmp_path, input_store, client):
    rng = np.random.default_rng(5)
    source = input_store(rng.random((1, 32, 32), dtype=np.float32), (1, 32, 32))
    output = tmp_path / "out.zarr"
    run_layers([PoolLayer.create("max", 2)], input=source, output=str(output), client=client)
    chunk = output / FEATURES / "c" / "0" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(Exception, match=r"(?i)checksum|crc"):
        open_features(str(output)).data.compute()
