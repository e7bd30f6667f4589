"""The ``activation`` layer kind and the ``sqrt`` activation (after a conv or on its own)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from support.pointwise import chunked_equals_in_memory, conv, image

from featuremap._vocabulary import ACTIVATIONS
from featuremap.engine.kernels import activate
from featuremap.engine.layers import ActivationLayer, ConvLayer
from featuremap.engine.stack import apply, apply_stack, resolve_stack
from featuremap.errors import InputError

NUMPY = {
    "none": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x.astype(np.float64))),
    "abs": np.abs,
    "square": np.square,
    "sqrt": np.sqrt,
}


def test_sqrt_is_nan_below_zero_quietly_in_place():
    x = np.array([4.0, 0.0, -1.0, np.nan, np.inf], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = activate("sqrt", x)
    assert got is x
    np.testing.assert_array_equal(got, [2.0, 0.0, np.nan, np.nan, np.inf])


def test_sqrt_after_a_conv():
    weight = np.ones((1, 1, 1, 2), np.float32)
    layer = ConvLayer.create(weight, activation="sqrt")
    x = np.array([[[[1.0, 3.0, -9.0]]]], np.float32)  # sums 4, -6
    np.testing.assert_array_equal(apply_stack([layer], x)[0, 0, 0], [2.0, np.nan])
    assert layer.to_dict()["activation"] == "sqrt"


@pytest.mark.parametrize("op", ACTIVATIONS)
@pytest.mark.parametrize("ndim", [2, 3])
def test_every_activation_on_every_feature_of_2d_and_3d_blocks(op, ndim):
    x = image(ndim, channels=3, seed=ndim)
    corner = (0, 1, *(0,) * ndim)
    x[corner] = np.nan
    before = x.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = apply(ActivationLayer.create(op), x, ndim)  # a pointwise layer fits either rank
    np.testing.assert_array_equal(x, before)  # the input is never written
    assert got.dtype == np.float32
    with np.errstate(invalid="ignore", over="ignore"):
        expected = NUMPY[op](x)
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-7)
    assert np.isnan(got[corner])


@pytest.mark.parametrize("ndim", [2, 3])
def test_chunks_agree_after_a_conv(ndim):
    layers = [conv(ndim, 1, 2), ActivationLayer.create("sqrt")]
    got = chunked_equals_in_memory(layers, image(ndim))
    assert np.isnan(got).any()
    assert (got > 0).any()


def test_described_labelled_and_refused():
    layer = ActivationLayer.create("abs")
    assert layer.ndim is None
    assert layer.out_channels(5) == 5
    assert layer.describe() == {"type": "activation", "op": "abs", "padding_spec": [[0, 0], [0, 0]]}
    assert layer.to_dict()["kernel_size"] == [1, 1]
    stack = resolve_stack(
        [ActivationLayer.create("sqrt"), ActivationLayer.create("none")], (4, 4), 2
    )
    assert stack.feature_labels() == ("sqrt(channel 0)", "sqrt(channel 1)")
    assert stack.geometry.receptive_field == (1, 1)
    with pytest.raises(InputError, match=r"op must be one of none, relu, .*sqrt, got 'gelu'"):
        ActivationLayer.create("gelu")
