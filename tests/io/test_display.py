"""Display statistics (``featuremap.io._display``): exact to merge in any order, NaN- and
inf-safe, saved as JSON, and the omero channels they make (the window and active rules)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featuremap.io._display import (
    ACTIVE_CHANNELS,
    COLOURS,
    WINDOW_SIGMAS,
    FeatureStats,
    omero_channels,
)


def _blocks(seed: int, count: int, dtype: str) -> list[np.ndarray]:
    """``count`` blocks ``(2, features=3, 5, 4)`` with NaN and inf sprinkled in."""
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(count):
        block = (rng.normal(50.0, 20.0, (2, 3, 5, 4)) * rng.integers(1, 100)).astype(dtype)
        block[rng.random(block.shape) < 0.1] = np.nan
        block[rng.random(block.shape) < 0.05] = np.inf
        blocks.append(block)
    return blocks


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**16),
    count=st.integers(1, 6),
    dtype=st.sampled_from(["float32", "float16"]),
)
def test_merged_blocks_equal_the_statistics_of_all_values(seed, count, dtype):
    blocks = _blocks(seed, count, dtype)
    merged = FeatureStats.empty(3)
    for block in reversed(blocks):  # any order
        merged = merged.merge(FeatureStats.of(block, 1))
    values = np.concatenate(
        [np.moveaxis(b, 1, 0).reshape(3, -1).astype(np.float64) for b in blocks], axis=1
    )
    for feature, row in enumerate(values):
        finite = row[np.isfinite(row)]
        assert merged.count[feature] == finite.size
        if finite.size:
            assert merged.low[feature] == finite.min()
            assert merged.high[feature] == finite.max()
            assert merged.mean[feature] == pytest.approx(finite.mean(), rel=1e-9, abs=1e-9)
            assert merged.m2[feature] == pytest.approx(
                finite.var() * finite.size, rel=1e-9, abs=1e-6
            )


def test_window_is_the_range_and_mean_plus_minus_sigmas_within_it():
    values = np.concatenate([np.zeros(98), [-1000.0, 1000.0]])[None, :]  # two outliers
    stats = FeatureStats.of(values, 0)
    window = stats.window(0)
    spread = WINDOW_SIGMAS * values.std()
    assert window == pytest.approx({"min": -1000.0, "max": 1000.0, "start": -spread, "end": spread})
    narrow = FeatureStats.of(np.array([[1.0, 2.0, 3.0]]), 0).window(0)
    assert (narrow["start"], narrow["end"]) == (1.0, 3.0)  # clipped to the range
    constant = FeatureStats.of(np.full((1, 4), 7.0), 0).window(0)
    assert constant["min"] == constant["max"] == 7.0
    assert constant["start"] < 7.0 < constant["end"]
    assert FeatureStats.of(np.full((1, 4), np.nan), 0).window(0) is None


def test_saved_as_json_and_read_back():
    stats = FeatureStats.of(_blocks(1, 1, "float32")[0], 1).merge(FeatureStats.empty(3))
    saved = stats.to_dict()
    assert FeatureStats.from_dict(saved, 3).to_dict() == saved
    empty = FeatureStats.empty(2).to_dict()
    assert empty["min"] == [None, None]  # JSON has no infinity
    assert FeatureStats.from_dict(empty, 2).window(0) is None
    assert FeatureStats.from_dict(saved, 4) is None  # another job's features
    assert FeatureStats.from_dict({"count": "x"}, 3) is None
    assert FeatureStats.from_dict(None, 3) is None


def test_omero_channels_few_active_distinct_colours():
    labels = [f"f{i}" for i in range(8)]
    channels = omero_channels(labels)
    assert [c["active"] for c in channels] == [True] * ACTIVE_CHANNELS + [False] * 5
    assert [c["color"] for c in channels[: len(COLOURS)]] == list(COLOURS)
    assert len({c["color"] for c in channels[:ACTIVE_CHANNELS]}) == ACTIVE_CHANNELS
    assert channels[0]["window"] == {"min": 0.0, "max": 1.0, "start": 0.0, "end": 1.0}
    one = omero_channels(["only"], FeatureStats.of(np.array([[2.0, 4.0]]), 0))
    assert one[0]["active"]
    assert one[0]["window"]["min"] == 2.0
    assert one[0]["window"]["max"] == 4.0
