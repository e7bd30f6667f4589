"""``product`` in a pipeline file: ``pairs`` of input channels, one product each."""

from __future__ import annotations

from pathlib import Path

import pytest

from featuremap.engine.layers import ProductLayer
from featuremap.errors import InputError
from featuremap.pipeline.layers import build_layers, layers_to_dicts, parse_layers


def layers(*items):
    return parse_layers(list(items), Path.cwd())


def test_parsed_written_back_and_built():
    specs = layers({"conv": {"bank": {"type": "box"}}}, {"product": {"pairs": [[0, 1], [1, 1]]}})
    assert layers_to_dicts(specs)[1] == {"product": {"pairs": [[0, 1], [1, 1]]}}
    assert layers(*layers_to_dicts(specs)) == specs
    _, product = build_layers(specs, 2)
    assert product == ProductLayer(((0, 1), (1, 1)))
    assert specs[1].ndim is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"pairs": [[0, -1]]}, r"^layers\[1\].product.pairs: must be a non-empty list of \[i, j\]"),
        ({"pairs": []}, r"^layers\[1\].product.pairs: must be a non-empty list"),
        ({}, r"^layers\[1\].product.pairs: missing"),
        ({"pairs": [[0, 1]], "ndim": 2}, r"^layers\[1\].product: unknown key 'ndim'"),
    ],
)
def test_refusals_name_the_place(value, message):
    with pytest.raises(InputError, match=message):
        layers({"conv": {"bank": {"type": "box"}}}, {"product": value})


def test_an_index_past_the_channels_is_refused_at_build_with_the_channel_count():
    specs = layers({"conv": {"bank": {"type": "box"}}}, {"product": {"pairs": [[0, 2]]}})
    with pytest.raises(
        InputError,
        match=r"^layers\[1\].product: pairs: \[0, 2\] reads channel 2 but the input has 2 "
        r"channels \(0 to 1\)$",
    ):
        build_layers(specs, 2)  # a box per channel: 2 features
    build_layers(specs, 3)
