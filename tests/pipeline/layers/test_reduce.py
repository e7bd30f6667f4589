"""``reduce`` in a pipeline file: groups and ops given, or suggested by the previous bank."""

from __future__ import annotations

from pathlib import Path

import pytest

from featuremap.errors import InputError
from featuremap.pipeline.layers import build_layers, parse_layers


def layers(*items):
    return parse_layers(list(items), Path.cwd())


def test_mr8_suggests_its_groups_and_ops():
    specs = layers({"conv": {"bank": {"type": "mr8"}}}, {"reduce": {}})
    assert specs[1].to_dict() == {"op": None, "groups": None}
    conv, reduce = build_layers(specs, 1)
    assert reduce.groups == (6, 6, 6, 6, 6, 6, 1, 1)  # 38 filters, 8 responses
    assert reduce.ops[0] == "max_abs"
    assert "max" in reduce.ops
    assert reduce.out_channels(conv.out_channels(1)) == 8


def test_given_groups_and_op_win():
    specs = layers({"conv": {"bank": {"type": "mr8"}}}, {"reduce": {"op": "mean", "groups": 2}})
    _, reduce = build_layers(specs, 1)
    assert reduce.ops == ("mean",)
    assert reduce.groups == (2,)


def test_no_groups_and_no_suggestion_is_refused_at_its_place():
    specs = layers({"conv": {"bank": {"type": "box"}}}, {"reduce": {"op": "max"}})
    with pytest.raises(InputError, match=r"layers\[1\].reduce: groups: missing"):
        build_layers(specs, 1)
