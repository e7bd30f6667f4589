"""``Bank`` behaviour (``featuremap.banks._bank``): expanding a bank to several input channels."""

from __future__ import annotations

import numpy as np
import pytest
from support.bank_reference import correlate_torch

import featuremap.banks as banks
from featuremap.errors import InputError


@pytest.fixture
def image3():
    return np.random.default_rng(3).standard_normal((3, 12, 13)).astype(np.float32)


def test_per_channel_is_the_bank_on_each_channel(image3):
    bank = banks.get("random", n=4, size=3, seed=1, bias=True)
    expanded = bank.for_channels(3)
    assert expanded.groups == 3
    assert expanded.weight.shape == (12, 1, 3, 3)
    assert expanded.bias.shape == (12,)
    assert [f["channel"] for f in expanded.filters] == [0] * 4 + [1] * 4 + [2] * 4
    expected = np.concatenate([correlate_torch(image3[c : c + 1], bank) for c in range(3)])
    np.testing.assert_allclose(correlate_torch(image3, expanded), expected, rtol=1e-12, atol=1e-12)


def test_sum_applies_the_same_filter_to_every_channel_and_adds(image3):
    bank = banks.get("sobel")
    summed = bank.for_channels(3, mode="sum")
    assert summed.groups == 1
    assert summed.weight.shape == (2, 3, 3, 3)
    expected = sum(correlate_torch(image3[c : c + 1], bank) for c in range(3))
    np.testing.assert_allclose(correlate_torch(image3, summed), expected, rtol=1e-12, atol=1e-12)


def test_for_channels_identity_and_mismatch():
    single = banks.get("box")
    assert single.for_channels(1) is single
    multi = banks.get("random", in_channels=3)
    assert multi.for_channels(3) is multi
    with pytest.raises(
        InputError, match="bank 'random' takes 3 input channels but the input has 4"
    ):
        multi.for_channels(4)
    with pytest.raises(
        InputError, match="channel mode must be one of 'per_channel', 'sum', got 'mean'"
    ):
        single.for_channels(2, mode="mean")
    with pytest.raises(InputError, match="in_channels must be an integer >= 1"):
        single.for_channels(0)
    expanded = single.for_channels(2)
    assert expanded.for_channels(2) is expanded
    with pytest.raises(InputError, match="takes 2 input channels but the input has 5"):
        expanded.for_channels(5)


def test_mr8_grouping_repeats_per_channel():
    expanded = banks.get("mr8", size=9).for_channels(2)
    assert expanded.reduce_groups == (6, 6, 6, 6, 6, 6, 1, 1) * 2
    assert expanded.to_dict()["reduce_groups"] == [6, 6, 6, 6, 6, 6, 1, 1] * 2


def test_expanding_to_many_channels_is_bounded_before_allocating():
    with pytest.raises(
        InputError,
        match=r"bank 'identity' expanded to 300000 input channels \(per_channel\) would have "
        r"300000 filters .*; at most 262144 are allowed",
    ):
        banks.get("identity").for_channels(300_000)
    with pytest.raises(
        InputError,
        match=r"bank 'random' expanded to 5 input channels \(sum\) would hold "
        r"15 x 5 x 1025 x 1025 = 78796875 weights; at most 67108864",
    ):
        banks.get("random", n=15, size=1025).for_channels(5, "sum")
    assert banks.get("random", n=15, size=1025).for_channels(4, "sum").weight.shape[1] == 4
