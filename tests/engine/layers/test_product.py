"""The ``product`` layer kind: ``x[i] * x[j]`` per pair of features."""

from __future__ import annotations

import numpy as np
import pytest
from support.pointwise import chunked_equals_in_memory, conv, image

from featuremap.engine.layers import ProductLayer
from featuremap.engine.stack import apply, apply_stack, resolve_stack
from featuremap.errors import InputError

PAIRS = [[0, 1], [2, 2], [1, 0], [0, 2]]


@pytest.mark.parametrize("ndim", [2, 3])
def test_products_of_pairs_on_2d_and_3d_blocks(ndim):
    x = image(ndim, channels=3, seed=ndim)
    x[(1, 2, *(0,) * ndim)] = np.nan
    got = apply(ProductLayer.create(PAIRS), x, ndim)
    assert got.dtype == np.float32
    assert got.shape == (2, 4, *x.shape[2:])
    expected = np.stack([x[:, i] * x[:, j] for i, j in PAIRS], axis=1)
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(got[(1, 1, *(0,) * ndim)])
    assert np.isnan(got[(1, 3, *(0,) * ndim)])


@pytest.mark.parametrize("ndim", [2, 3])
def test_chunks_agree_after_a_conv(ndim):
    layers = [conv(ndim, 1, 3), ProductLayer.create([[0, 0], [0, 1], [2, 1]])]
    assert chunked_equals_in_memory(layers, image(ndim)).shape[1] == 3


def test_described_and_labelled():
    layer = ProductLayer.create(((0, 1), [1, 1]))
    assert layer.pairs == ((0, 1), (1, 1))
    assert layer.ndim is None
    assert layer.describe() == {
        "type": "product",
        "pairs": [[0, 1], [1, 1]],
        "padding_spec": [[0, 0], [0, 0]],
    }
    stack = resolve_stack([layer], (3, 3), 2)
    assert stack.feature_labels() == (
        "product(channel 0, channel 1)",
        "product(channel 1, channel 1)",
    )


@pytest.mark.parametrize(
    "pairs",
    [[], [[0]], [[0, 1, 2]], [[0, -1]], [[0, 1.0]], [[True, 0]], "01", [0, 1], None],
)
def test_malformed_pairs_are_refused(pairs):
    with pytest.raises(InputError, match=r"^pairs must be a non-empty list of \[i, j\]"):
        ProductLayer.create(pairs)


def test_an_index_past_the_channels_is_refused_with_the_channel_count():
    layer = ProductLayer.create([[0, 1], [2, 7]])
    with pytest.raises(
        InputError,
        match=r"^layers\[0\].product: pairs: \[2, 7\] reads channel 7 but the input has 3 "
        r"channels \(0 to 2\)$",
    ):
        apply_stack([layer], np.zeros((3, 4, 4), np.float32))
