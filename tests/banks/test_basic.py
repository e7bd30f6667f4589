"""The plain banks (``featuremap.banks.basic``): random, box and identity."""

from __future__ import annotations

import math

import numpy as np
from support.bank_reference import correlate_torch

import featuremap.banks as banks


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
