"""Registry, parameter validation, Bank behaviour, the plain banks and weight files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import featuremap.banks as banks
from featuremap.errors import InputError

BUILT_IN = [name for name in banks.names() if name != "file"]


def correlate_torch(image: np.ndarray, bank: banks.Bank) -> np.ndarray:
    """Oracle: torch conv2d in float64 on (C, H, W) with the bank's weight, bias and groups."""
    result = torch.nn.functional.conv2d(
        torch.from_numpy(image[None].astype(np.float64)),
        torch.from_numpy(bank.weight.astype(np.float64)),
        None if bank.bias is None else torch.from_numpy(bank.bias.astype(np.float64)),
        groups=bank.groups,
    )
    return result[0].numpy()


# --- registry and metadata -------------------------------------------------------------------


def test_names_sorted_and_complete():
    names = banks.names()
    assert names == sorted(names)
    expected = {"gabor", "gaussian", "log", "dog", "sobel", "scharr", "prewitt", "laplacian", "lm",
                "schmid", "mr8", "rfs", "ilastik", "random", "box", "identity", "file"}  # fmt: skip
    assert expected <= set(names)


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_bank_builds_consistently(name):
    bank = banks.get(name)
    n_filters = bank.weight.shape[0]
    assert bank.weight.dtype == np.float32 and bank.weight.ndim == 4
    assert bank.weight.shape[2] % 2 == 1 and bank.weight.shape[2] == bank.weight.shape[3]
    assert len(bank.filters) == n_filters and all("name" in f for f in bank.filters)
    assert np.isfinite(bank.weight).all() and not bank.weight.flags.writeable
    assert bank.bias is None or bank.bias.shape == (n_filters,)
    # metadata is JSON and rebuilding from the recorded params gives the same weights (determinism)
    metadata = json.loads(json.dumps(bank.to_dict()))
    assert metadata["shape"] == list(bank.weight.shape) and metadata["name"] == name
    rebuilt = banks.get(name, **metadata["params"])
    np.testing.assert_array_equal(rebuilt.weight, bank.weight)


@pytest.mark.parametrize("name", banks.names())
def test_describe_lists_every_parameter(name):
    info = banks.describe(name)
    assert info.name == name and info.summary and "\n" not in info.summary
    assert all(len(row) == 3 and row[2] for row in info.parameters)
    assert banks.BankInfo.from_dict(info.to_dict()) == info


def test_unknown_bank_names_alternatives():
    with pytest.raises(InputError, match=r"unknown filter bank 'gabr' \(did you mean 'gabor'\?\); available banks: box, "):
        banks.get("gabr")
    with pytest.raises(InputError, match="unknown filter bank"):
        banks.describe("nope")


def test_unknown_parameter_lists_parameters():
    with pytest.raises(InputError) as caught:
        banks.get("gabor", sizes=5)
    message = str(caught.value)
    assert message.startswith("bank 'gabor' has no parameter 'sizes' (did you mean 'size'?); its parameters are: size, orientations, angles")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "params", "pattern"),
    [
        ("gabor", {"size": 4}, r"bank 'gabor' parameter 'size' must be an odd integer >= 1, got 4"),
        ("gabor", {"size": True}, r"parameter 'size' must be an odd integer"),
        ("gabor", {"frequencies": [0.1, 0.7]}, r"'frequencies' \(each element\) must be a finite number > 0 and <= 0.5, got 0.7"),
        ("gabor", {"frequencies": []}, r"'frequencies' must be a non-empty list"),
        ("gabor", {"orientations": 4, "angles": [0.0]}, r"orientations or angles, not both"),
        ("gaussian", {"sigmas": [1.0, -2.0]}, r"'sigmas' \(each element\) must be a finite number > 0, got -2.0"),
        ("gaussian", {"sigmas": "1"}, r"'sigmas' must be a non-empty list of numbers > 0, got '1'"),
        ("gaussian", {"orders": [[1, 2]]}, r"'orders' must be a non-empty list of distinct \[oy, ox\] pairs"),
        ("gaussian", {"orders": [[0, 1], [0, 1]]}, r"repeated \[0, 1\]"),
        ("gaussian", {"truncate": float("nan")}, r"'truncate' must be a finite number > 0, got nan"),
        ("dog", {"k": 1}, r"'k' must be a number > 0 other than 1"),
        ("laplacian", {"neighbours": 6}, r"'neighbours' must be one of 4, 8, got 6"),
        ("sobel", {"normalize": 1}, r"'normalize' must be true or false, got 1"),
        ("lm", {"variant": "lms"}, r"'variant' must be one of 'LML', 'LMS', got 'lms'"),
        ("ilastik", {"features": ["gaussian", "edges"]}, r"unknown 'edges'"),
        ("random", {"seed": -1}, r"'seed' must be an integer >= 0"),
        ("random", {"n": 2.0}, r"'n' must be an integer >= 1 and <= 65536, got 2.0"),
        ("identity", {"size": 2}, r"'size' must be an odd integer"),
        ("file", {}, r"bank 'file' parameter 'path' is required"),
    ],
)
def test_bad_values_are_one_line_input_errors(name, params, pattern):
    with pytest.raises(InputError, match=pattern) as caught:
        banks.get(name, **params)
    assert "\n" not in str(caught.value)


def test_numpy_scalars_are_accepted_and_stored_as_plain_python():
    bank = banks.get("gaussian", sigmas=[np.float32(1.5)], orders=[[np.int64(1), 0]], size=np.int64(9))
    assert bank.params["size"] == 9 and type(bank.params["size"]) is int
    assert type(bank.params["sigmas"][0]) is float
    json.dumps(bank.to_dict())


# --- for_channels --------------------------------------------------------------------------------


@pytest.fixture
def image3():
    return np.random.default_rng(3).standard_normal((3, 12, 13)).astype(np.float32)


def test_per_channel_is_the_bank_on_each_channel(image3):
    bank = banks.get("random", n=4, size=3, seed=1, bias=True)
    expanded = bank.for_channels(3)
    assert expanded.groups == 3 and expanded.weight.shape == (12, 1, 3, 3) and expanded.bias.shape == (12,)
    assert [f["channel"] for f in expanded.filters] == [0] * 4 + [1] * 4 + [2] * 4
    expected = np.concatenate([correlate_torch(image3[c : c + 1], bank) for c in range(3)])
    np.testing.assert_allclose(correlate_torch(image3, expanded), expected, rtol=1e-12, atol=1e-12)


def test_sum_applies_the_same_filter_to_every_channel_and_adds(image3):
    bank = banks.get("sobel")
    summed = bank.for_channels(3, mode="sum")
    assert summed.groups == 1 and summed.weight.shape == (2, 3, 3, 3)
    expected = sum(correlate_torch(image3[c : c + 1], bank) for c in range(3))
    np.testing.assert_allclose(correlate_torch(image3, summed), expected, rtol=1e-12, atol=1e-12)


def test_for_channels_identity_and_mismatch():
    single = banks.get("box")
    assert single.for_channels(1) is single
    multi = banks.get("random", in_channels=3)
    assert multi.for_channels(3) is multi
    with pytest.raises(InputError, match="bank 'random' takes 3 input channels but the input has 4"):
        multi.for_channels(4)
    with pytest.raises(InputError, match="channel mode must be one of 'per_channel', 'sum', got 'mean'"):
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


# --- plain banks -----------------------------------------------------------------------------------


def test_random_is_seeded_and_scaled():
    first = banks.get("random", n=64, size=5, in_channels=2, seed=7, bias=True)
    again = banks.get("random", n=64, size=5, in_channels=2, seed=7, bias=True)
    other = banks.get("random", n=64, size=5, in_channels=2, seed=8, bias=True)
    np.testing.assert_array_equal(first.weight, again.weight)
    np.testing.assert_array_equal(first.bias, again.bias)
    assert not np.array_equal(first.weight, other.weight)
    assert first.weight.shape == (64, 2, 5, 5)
    # default std 1/sqrt(fan_in) = 1/sqrt(50): the sample std of 3200 draws is within ~3 %
    assert abs(first.weight.std() * math.sqrt(50) - 1) < 0.06
    assert banks.get("random", std=2.0).params["std"] == 2.0
    assert banks.get("random").bias is None


def test_box_and_identity_by_application():
    image = np.random.default_rng(0).standard_normal((1, 9, 10))
    box = correlate_torch(image, banks.get("box", size=3))[0]
    windows = np.lib.stride_tricks.sliding_window_view(image[0], (3, 3))
    np.testing.assert_allclose(box, windows.mean(axis=(-1, -2)), rtol=1e-6)
    identity = correlate_torch(image, banks.get("identity", size=5))[0]
    np.testing.assert_allclose(identity, image[0, 2:-2, 2:-2], rtol=1e-6)
