"""``reduce`` with ``op: magnitude``: ``sqrt(Σ x²)`` over each group of features, 2-D and 3-D."""

from __future__ import annotations

import numpy as np
import pytest
from support.pointwise import chunked_equals_in_memory, conv, image

from featuremap.engine.layers import ReduceLayer
from featuremap.engine.stack import apply, resolve_stack


@pytest.mark.parametrize("ndim", [2, 3])
def test_magnitude_of_each_group_on_2d_and_3d_blocks(ndim):
    x = image(ndim, channels=5, seed=ndim)
    x[(0, 4, *(0,) * ndim)] = np.nan
    got = apply(ReduceLayer.create("magnitude", [3, 2]), x, ndim)
    assert got.dtype == np.float32
    expected = np.stack(
        [np.sqrt((x[:, :3] ** 2).sum(axis=1)), np.sqrt((x[:, 3:] ** 2).sum(axis=1))], axis=1
    )
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.isnan(got[(0, 1, *(0,) * ndim)])
    assert not np.isnan(got[(0, 0, *(0,) * ndim)])
    single = apply(ReduceLayer.create("magnitude", 1), x[:, :2], ndim)  # a group of one: |x|
    np.testing.assert_array_equal(single, np.abs(x[:, :2]))


@pytest.mark.parametrize("ndim", [2, 3])
def test_chunks_agree_after_a_conv(ndim):
    layers = [conv(ndim, 1, ndim), ReduceLayer.create("magnitude", ndim)]  # a gradient magnitude
    got = chunked_equals_in_memory(layers, image(ndim))
    assert got.shape[1] == 1
    assert (got >= 0).all()


def test_labelled_as_a_reduction():
    stack = resolve_stack([ReduceLayer.create("magnitude", 2)], (3, 3), 2)
    assert stack.feature_labels() == ("magnitude of channel 0 … channel 1",)
