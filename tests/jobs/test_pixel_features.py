"""The ``features`` layer as a job: a Zarr input chunked 256 (2-D) or (16, 128, 128) (3-D)
through a real local cluster equals ``featuremap.pixel_features`` in memory, labels included."""

from __future__ import annotations

import numpy as np
import xarray as xr
import zarr
from support.stores import write_input

import featuremap
from featuremap.io import FEATURES


def _run(tmp_path, client, data, chunks, dims, layer):
    source = write_input(tmp_path / "in.zarr", data, chunks, dimension_names=dims)
    output = tmp_path / "out.zarr"
    pipeline = {"name": "pixel-features", "layers": [{"features": layer}]}
    featuremap.run(pipeline, input=source, output=str(output), client=client)
    return zarr.open_group(str(output), mode="r")[FEATURES][...], xr.open_zarr(output)


def test_the_default_set_in_256_chunks_equals_the_in_memory_features(tmp_path, client):
    image = np.random.default_rng(8).random((600, 530), dtype=np.float32)
    stored, ds = _run(tmp_path, client, image, (256, 256), ["y", "x"], {"set": "ilastik"})
    expected = featuremap.pixel_features(image)
    np.testing.assert_allclose(stored, expected, rtol=1e-6, atol=1e-6 * float(image.max()))
    assert list(ds["c"].values) == featuremap.pixel_feature_labels()


def test_3d_features_in_chunks_equal_the_in_memory_features(tmp_path, client):
    volume = np.random.default_rng(9).random((26, 90, 84), dtype=np.float32)
    layer = {
        "set": "ilastik",
        "ndim": 3,
        "sigmas": [[0.7, 1.0, 1.0], 2.0],
        "features": ["dog", "structure_tensor_eigenvalues", "hessian_eigenvalues"],
    }
    stored, ds = _run(tmp_path, client, volume, (16, 40, 40), ["z", "y", "x"], layer)
    expected = featuremap.pixel_features(volume, layer["sigmas"], layer["features"], ndim=3)
    assert ds[FEATURES].dims == ("c", "z", "y", "x")
    np.testing.assert_allclose(stored, expected, rtol=1e-6, atol=1e-6 * float(volume.max()))
