"""What every layer kind shares: activations, the padding as written, host float32 weights."""

from __future__ import annotations

import numpy as np
import pytest

from featuremap.engine.layers import (
    LAYER_TYPES,
    ActivationLayer,
    ConvLayer,
    EigenvaluesLayer,
    FeaturesLayer,
    PoolLayer,
    ProductLayer,
    ReduceLayer,
)
from featuremap.engine.layers._base import as_float32_host, padding_spec, parse_activation
from featuremap.errors import InputError


def test_parse_activation_takes_the_vocabulary():
    assert parse_activation("relu") == "relu"
    with pytest.raises(InputError, match="activation must be one of"):
        parse_activation("gelu")


def test_padding_as_written():
    assert padding_spec("same") == "same"
    assert padding_spec(((1, 2), (0, 0))) == [[1, 2], [0, 0]]


def test_weights_become_contiguous_float32_on_the_host():
    weight = as_float32_host(np.arange(8, dtype=np.int16).reshape(2, 4)[:, ::2], "weight")
    assert weight.dtype == np.float32
    assert weight.flags.c_contiguous
    with pytest.raises(InputError, match="bias must be a numeric array"):
        as_float32_host(np.array([object()]), "bias")


def test_every_kind_is_listed():
    assert set(LAYER_TYPES) == {
        ConvLayer,
        PoolLayer,
        ReduceLayer,
        ActivationLayer,
        ProductLayer,
        EigenvaluesLayer,
        FeaturesLayer,
    }
