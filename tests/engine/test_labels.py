"""Readable feature labels from filter descriptions."""

from __future__ import annotations

import math

from featuremap.engine.labels import filter_label, group_label


def test_a_gabor_filter_reads_as_it_is_written():
    description = {
        "name": "gabor",
        "orientation": math.pi / 4,
        "frequency": 0.2,
        "sigma": 2.8125,
        "phase": 0.0,
    }
    assert filter_label(description) == "gabor θ=45° f=0.2 σ=2.81 even"
    assert filter_label({**description, "phase": math.pi / 2}).endswith(" odd")
    assert filter_label({"name": "g", "sigma": [1.0, 2.5]}) == "g σ=1×2.5"
    assert filter_label({"name": "box", "channel": "DAPI"}) == "box c=DAPI"


def test_a_group_over_orientations_keeps_what_they_share():
    edges = [{"name": "edge", "sigma": [3, 1], "orientation": i * math.pi / 6} for i in range(6)]
    assert group_label("max_abs", edges) == "max|·| edge σ=3×1 (6 orientations)"
    assert group_label("mean", edges[:1]) == filter_label(edges[0])  # a group of one passes


def test_a_group_of_different_features_names_its_ends():
    parts = [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    assert group_label("sum", parts) == "sum of a … c"
