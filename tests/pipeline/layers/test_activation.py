"""``activation`` in a pipeline file: ``op`` applied to every feature."""

from __future__ import annotations

from pathlib import Path

import pytest

from featuremap.engine.layers import ActivationLayer
from featuremap.errors import InputError
from featuremap.pipeline.layers import build_layers, layers_to_dicts, parse_layers


def layers(*items):
    return parse_layers(list(items), Path.cwd())


def test_parsed_written_back_and_built():
    specs = layers(
        {"conv": {"bank": {"type": "box"}, "activation": "sqrt"}}, {"activation": {"op": "abs"}}
    )
    assert layers_to_dicts(specs)[1] == {"activation": {"op": "abs"}}
    assert layers(*layers_to_dicts(specs)) == specs
    conv, activation = build_layers(specs, 2)
    assert conv.activation == "sqrt"
    assert activation == ActivationLayer("abs")
    assert specs[1].ndim is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"op": "gelu"}, r"^layers\[1\].activation.op: must be one of none, .*sqrt, got 'gelu'"),
        ({}, r"^layers\[1\].activation.op: missing"),
        ({"op": "abs", "groups": 2}, r"^layers\[1\].activation: unknown key 'groups'"),
        ("abs", r"^layers\[1\].activation: must be a mapping with keys op"),
    ],
)
def test_refusals_name_the_place(value, message):
    with pytest.raises(InputError, match=message):
        layers({"conv": {"bank": {"type": "box"}}}, {"activation": value})
