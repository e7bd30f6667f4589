"""``reduce: {op: magnitude}`` in a pipeline file: a gradient magnitude from its derivatives."""

from __future__ import annotations

from pathlib import Path

from featuremap.engine.layers import ReduceLayer
from featuremap.pipeline.layers import build_layers, layers_to_dicts, parse_layers


def test_magnitude_parsed_written_back_and_built_in_2d_and_3d():
    for conv in ({"type": "box"}, {"type": "box", "ndim": 3}):
        items = [{"conv": {"bank": conv}}, {"reduce": {"op": "magnitude", "groups": 2}}]
        specs = parse_layers(items, Path.cwd())
        assert layers_to_dicts(specs)[1] == {"reduce": {"op": "magnitude", "groups": [2]}}
        _, reduce = build_layers(specs, 2)
        assert reduce == ReduceLayer(("magnitude",), (2,))
        assert reduce.out_channels(2) == 1
