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
    assert sorted(name for name, _ in group.arrays()) == ["c", FEATURES, "x", "y"]
    features = group[FEATURES]
    assert features.shape == expected.shape
    assert features.dtype == np.float32
    assert features.metadata.dimension_names == ("t", "c", "y", "x")
    # batch chunk of the input, every feature (a 5 x 6 block is too small for a chunk per
    # feature), out_chunks; not sharded
    assert features.chunks == (1, 3, 5, 6)
    assert features.shards is None
    codecs = [type(codec) for codec in features.metadata.codecs]
    assert zarr.codecs.Crc32cCodec in codecs
    # random input: output.codec auto found too little to save in the sample: checksum only
    assert zarr.codecs.BloscCodec not in codecs
    choice = OutputStore.open(output).root["output"]["codec_choice"]
    assert choice["arrays"][FEATURES]["codec"] == "none"
    assert np.isnan(features.metadata.fill_value)
    for index, layer in enumerate(layers):
        if layer.kind == "conv":
            np.testing.assert_array_equal(group[f"layers/{index}/weight"][...], layer.weight)
    np.testing.assert_array_equal(group["layers/0/bias"][...], layers[0].bias)
    assert "layers/2/bias" not in group  # the last conv has no bias
    # (t, y blocks, x blocks) of a 15 x 19 output, one done bit per block
    assert OutputStore.open(output).grid_shape == (2, 3, 4)
    assert group[MARKERS].dtype == np.uint8


def test_batch_axes_take_ngff_letters_where_the_axes_fit_ngff():
    from featuremap.io.layout import output_batch_names

    assert output_batch_names(["image"], ["n"], 2) == ("t",)
    assert output_batch_names(["time", "depth"], ["t", "z"], 2) == ("t", "z")
    assert output_batch_names(["species"], ["n"], 3) == ("t",)
    assert output_batch_names([], [], 2) == ()
    # no NGFF form: two non-z batch axes, or a batch z beside a 3-D stack's z
    assert output_batch_names(["dim_0", "dim_1"], ["batch", "batch"], 2) == ("dim_0", "dim_1")
    assert output_batch_names(["plane"], ["z"], 3) == ("plane",)


def test_feature_axis_found_by_name_also_in_old_stores():
    from featuremap.io.layout import feature_axis_of

    assert feature_axis_of(("t", "c", "z", "y", "x"), 5, 2) == 1
    assert feature_axis_of(("time", "feature", "y", "x"), 4, 2) == 1  # featuremap 0.1's name
    assert feature_axis_of(None, 5, 3) == 1
