"""``output.codec: auto``'s decision (``featuremap.io.codec_choice``) on samples: noisy float32
features are left uncompressed, masks, sparse and smooth ones compressed; explicit codecs, object
stores and recorded decisions (``--resume``) are kept. Jobs that decide: ``jobs/test_codec_auto``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from featuremap.engine.geometry import StackGeometry
from featuremap.io import FEATURES, OutputLayout
from featuremap.io.codec_choice import (
    MIN_SAVING,
    OBJECT_STORE_CODEC,
    ZSTD_MIN_GAIN,
    CodecDecision,
    apply_decision,
    choose_codec,
    decide_codecs,
    recorded_decision,
    stored_fractions,
)
from featuremap.io.pyramid import PyramidOptions, plan_pyramid

RNG = np.random.default_rng(5)


def _layout(codec: str = "auto", *, levels: int | None = None, dtype: str = "float32"):
    layout = OutputLayout(
        batch_dims=(),
        shape=(4, 256, 256),
        chunks=(1, 64, 64),
        shards=(4, 64, 64),
        stack=StackGeometry((3, 3), (1, 1), (1.0, 1.0)),
        codec=codec,
        dtype=dtype,
    )
    if levels is None:
        return layout
    return replace(layout, pyramid=plan_pyramid(PyramidOptions(levels, "mean"), layout))


def _noisy() -> np.ndarray:
    """Features of noise: filter responses, ~24 significant bits each."""
    return RNG.standard_normal((4, 64, 64)).astype(np.float32)


def _sparse() -> np.ndarray:
    """Mostly zero responses (a mask-like or sparse output)."""
    values = np.zeros((4, 64, 64), dtype=np.float32)
    values[:, RNG.integers(0, 64, 30), RNG.integers(0, 64, 30)] = RNG.random(30)
    return values


def _smooth() -> np.ndarray:
    y, x = np.mgrid[:64, :64]
    plane = np.sin(x / 9.0) * np.cos(y / 7.0)
    return np.stack([plane * (k + 1) for k in range(4)]).astype(np.float32)


def test_choose_codec_thresholds():
    assert choose_codec({"lz4": 0.89, "zstd": 0.87}) == "none"  # saves 11-13 %: not worth it
    assert choose_codec({"lz4": 1 - MIN_SAVING + 0.01, "zstd": 0.9}) == "none"
    assert choose_codec({"lz4": 1 - MIN_SAVING - 0.01, "zstd": 0.84}) == "lz4"
    assert choose_codec({"lz4": 0.95, "zstd": 0.6}) == "zstd"  # zstd alone pays
    assert choose_codec({"lz4": 0.3, "zstd": 0.2}) == "zstd"  # zstd <= 0.8 x LZ4's bytes
    assert choose_codec({"lz4": 0.3, "zstd": 0.28}) == "lz4"  # LZ4 is faster for about as much
    # both store almost nothing (all-zero blocks): zstd's 0.4 % of raw saved is not worth its time
    assert choose_codec({"lz4": 0.004, "zstd": 0.0002}) == "lz4"
    assert choose_codec({"lz4": 0.1, "zstd": 0.1 - ZSTD_MIN_GAIN}) == "zstd"


def test_noisy_features_store_near_raw_and_masks_far_below():
    noisy, mask = stored_fractions(_noisy(), 0), stored_fractions(_sparse() > 0, 0)
    assert min(noisy.values()) > 1 - MIN_SAVING
    assert max(mask.values()) < 0.2


@pytest.mark.parametrize(
    ("sample", "dtype", "compressed"),
    [
        (_noisy, "float32", False),
        (_sparse, "float32", True),
        (_smooth, "float32", True),
        (_smooth, "float16", True),
    ],
    ids=["noisy", "sparse", "smooth", "smooth-float16"],
)
def test_auto_decides_per_sample(sample, dtype, compressed):
    layout = _layout(dtype=dtype)
    decision = decide_codecs(layout, [sample(), sample()], object_store=False)
    assert decision.reason == "sampled"
    assert (decision.codec_of(FEATURES) != "none") == compressed
    resolved = apply_decision(layout, decision)
    assert resolved.codec == decision.codec_of(FEATURES)
    assert resolved.to_dict()["codec_choice"] == decision.to_dict()


def test_each_pyramid_level_decides_on_its_pooled_sample():
    layout = _layout(levels=2)
    decision = decide_codecs(layout, [_sparse()], object_store=False)
    paths = [name for name, _ in decision.arrays]
    assert paths == [FEATURES, *(level.path for level in layout.pyramid.levels)]
    resolved = apply_decision(layout, decision)
    for level in resolved.pyramid.levels:
        assert level.layout.codec == decision.codec_of(level.path) != "auto"
    stored = [dict(choice.stored) for _, choice in decision.arrays]
    assert stored[0] != stored[1]  # the level was measured on its own (pooled) values


def test_explicit_codecs_and_object_stores_are_not_sampled():
    explicit = decide_codecs(_layout("zstd", levels=1), [_noisy()], object_store=False)
    assert {choice.codec for _, choice in explicit.arrays} == {"zstd"}
    assert explicit.reason == "asked"
    remote = decide_codecs(_layout(), None, object_store=True)
    assert (remote.codec_of(FEATURES), remote.reason) == (OBJECT_STORE_CODEC, "object store")
    assert OBJECT_STORE_CODEC != "none"


def test_a_recorded_decision_comes_back_whole():
    layout = _layout(levels=1)
    decision = decide_codecs(layout, [_sparse()], object_store=False)
    record = apply_decision(layout, decision).to_dict()
    again = recorded_decision(record, layout)
    assert again.reason == "recorded"
    assert again.to_dict()["arrays"] == decision.to_dict()["arrays"]
    # a store from before auto records one codec for every array
    old = recorded_decision({"codec": "zstd"}, layout)
    assert {choice.codec for _, choice in old.arrays} == {"zstd"}
    assert isinstance(CodecDecision.from_dict(decision.to_dict()), CodecDecision)
