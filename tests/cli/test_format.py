"""How commands print: terminal-safe text, plurals, compact per-axis numbers, the layer table."""

from __future__ import annotations

import json

import pytest

from featuremap.cli._format import (
    describe_layer,
    echo_json,
    format_pair,
    layer_summary,
    layer_table,
    physical_line,
    plural,
    print_rich,
    safe,
)
from featuremap.engine.layers import ConvLayer, PoolLayer, ReduceLayer
from featuremap.engine.stack import resolve_stack


def test_safe_escapes_control_characters_and_keeps_text():
    assert safe("gabor θ=45°\ttab") == "gabor θ=45°\ttab"
    assert safe("\x1b]0;pwned\x07x") == "\\x1b]0;pwned\\x07x"
    assert safe("a\nb\x9bc\x7f") == "a\\nb\\x9bc\\x7f"


@pytest.mark.parametrize(("count", "text"), [(0, "0 blocks"), (1, "1 block"), (2, "2 blocks")])
def test_plural(count, text):
    assert plural(count, "block") == text


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ((3, 3), "3"),
        ((3, 5), "3×5"),
        ((0.5, 0.5), "0.5"),
        (([1, 2], [1, 2]), "1,2"),
        ((1.0, 2), "1×2"),
    ],
)
def test_format_pair_is_compact_when_equal(values, text):
    assert format_pair(values) == text


def test_describe_layer_names_every_kind():
    assert describe_layer({"type": "conv", "bank": {"name": "gabor"}, "activation": "abs"}) == (
        "conv gabor (abs)"
    )
    assert describe_layer({"type": "conv", "bank": {"name": "box"}}) == "conv box"
    assert describe_layer({"type": "pool", "op": "max"}) == "max pool"
    assert describe_layer({"type": "reduce", "op": "max_abs"}) == "reduce max_abs"
    assert describe_layer({"type": "future"}) == "future"


def _described():
    layers = [
        ConvLayer.create([[[[1.0, 0.0], [0.0, 1.0]]]] * 2, padding=[[0, 1], [0, 1]]),
        PoolLayer.create("avg", 2),
        ReduceLayer.create("max", 2),
    ]
    return resolve_stack(layers, (8, 8), 1).describe()


def test_layer_table_has_a_row_per_layer(capsys):
    print_rich(layer_table("p.yaml", (1, 8, 8), _described()))
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip().startswith(("│", "|"))]
    assert any("input" in row for row in rows)
    assert any("avg pool" in row for row in rows)
    assert any("reduce max" in row for row in rows)
    assert "0,1×0,1" in out  # asymmetric padding, written out


def test_layer_summary_keeps_geometry_and_the_bank_by_name():
    conv = _described()[0] | {"bank": {"name": "box", "params": {"size": 2}, "filters": [1] * 99}}
    summary = layer_summary(conv)
    assert summary["bank"] == {"name": "box", "params": {"size": 2}}
    assert summary["kernel_size"] == [2, 2]
    assert "filters" not in json.dumps(summary)


def test_physical_line_and_json(capsys):
    line = physical_line(
        {
            "units": ["micrometer"] * 2,
            "receptive_field": [4.25, 4.25],
            "jump": [1, 1],
            "offset": [2.125, 2.125],
        }
    )
    assert line == "in micrometer: receptive field 4.25, jump 1, first output centre 2.125"
    utm = physical_line(
        {
            "units": ["metre", "metre"],
            "receptive_field": [85.0, 85.0],
            "jump": [-20.0, 20.0],
            "offset": [4_999_975.0, 500_002.5],
        }
    )
    assert utm == "in metre: receptive field 85, jump -20×20, first output centre 4999975×500002.5"
    echo_json({"status": "complete", "blocks": 3})
    assert json.loads(capsys.readouterr().out) == {"status": "complete", "blocks": 3}
