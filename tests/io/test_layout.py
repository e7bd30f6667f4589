"""The layout of an output store (``featuremap.io.layout``): array names, dims, chunks, codecs, the
weights and the done-markers, on a store written by a real job (the ``finished`` fixture,
``conftest.py``)."""

from __future__ import annotations

import numpy as np
import zarr
import zarr.codecs

from featuremap.io import FEATURES, MARKERS, OutputStore


def test_layout_dims_chunks_and_codecs(finished):
    output, layers, _, expected = finished
    group = zarr.open_group(output, mode="r")
    assert sorted(name for name, _ in group.arrays()) == ["feature", FEATURES, "x", "y"]
    features = group[FEATURES]
    assert features.shape == expected.shape
    assert features.dtype == np.float32
    assert features.metadata.dimension_names == ("t", "feature", "y", "x")
    # batch chunk of the input, one feature (what a viewer reads), out_chunks; the block is one
    # shard of all features
    assert features.chunks == (1, 1, 5, 6)
    assert features.shards == (1, 3, 5, 6)
    [sharding] = features.metadata.codecs
    codecs = [type(codec) for codec in sharding.codecs]
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
