"""The Oxford VGG texture banks (Leung-Malik, Schmid, RFS / MR8): structure and independent values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.ndimage as ndi

import featuremap.banks as banks

SIZE = 25  # smaller than the reference's 49 to keep the tests fast; the definitions do not change


def as64(bank: banks.Bank) -> np.ndarray:
    return bank.weight[:, 0].astype(np.float64)


@pytest.mark.parametrize(("name", "count"), [("lm", 48), ("schmid", 13), ("rfs", 38), ("mr8", 38)])
def test_reference_counts_zero_mean_unit_l1(name, count):
    bank = banks.get(name)
    kernels = as64(bank)
    assert kernels.shape == (count, 49, 49)
    np.testing.assert_allclose(kernels.sum(axis=(1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(np.abs(kernels).sum(axis=(1, 2)), 1, rtol=1e-5)


# --- Leung-Malik -----------------------------------------------------------------------------


def test_lm_order_and_descriptions():
    bank = banks.get("lm", size=SIZE)
    names = [f["name"] for f in bank.filters]
    assert names == ["edge"] * 18 + ["bar"] * 18 + ["gaussian", "log", "log"] * 4
    assert [f["orientation"] for f in bank.filters[:6]] == [math.pi * i / 6 for i in range(6)]
    root2 = math.sqrt(2)
    assert [f["sigma"] for f in bank.filters[36:39]] == [root2, root2, 3 * root2]
    assert bank.filters[0]["sigma"] == pytest.approx([3 * root2, root2])
    assert bank.filters[12]["sigma"] == pytest.approx([6 * root2, 2 * root2])
    small = banks.get("lm", variant="LMS", size=SIZE)
    assert small.filters[0]["sigma"] == [3.0, 1.0]
    assert [f["sigma"] for f in small.filters[36::3]] == pytest.approx([1, root2, 2, 2 * root2])


def test_lm_orientations_rotate():
    kernels = as64(banks.get("lm", size=SIZE))
    for first in (0, 6, 12, 18, 24, 30):  # each (type, scale) block of 6 orientations
        for step in range(3):
            # 90 degrees later (3 steps of 30) is the same filter turned a quarter clockwise on screen
            np.testing.assert_allclose(
                kernels[first + step + 3], np.rot90(kernels[first + step], -1), atol=1e-7
            )
    # 30 degrees: the 0-degree bar at the middle scale rotated by interpolation (clockwise on screen)
    rotated = ndi.rotate(kernels[24], -30, reshape=False, order=3)
    correlation = np.corrcoef(rotated.ravel(), kernels[25].ravel())[0, 1]
    assert correlation > 0.99


def test_lm_symmetries_and_signs():
    kernels = as64(banks.get("lm", size=SIZE))
    centre = SIZE // 2
    np.testing.assert_allclose(kernels[:18], -kernels[:18, ::-1, ::-1], atol=1e-7)  # edges are odd
    np.testing.assert_allclose(
        kernels[18:], kernels[18:, ::-1, ::-1], atol=1e-7
    )  # bars and blobs are even
    assert (
        kernels[18:36, centre, centre] < 0
    ).all()  # bars: second derivative, negative on the ridge
    assert (kernels[36::3, centre, centre] > 0).all()  # Gaussians (mean removed) peak at the centre
    assert (kernels[37::3, centre, centre] < 0).all()
    assert (kernels[38::3, centre, centre] < 0).all()


def test_lm_edge_value_from_its_closed_form():
    # At 0 degrees the edge filter is outer(a, b) with a(row) = (row - h) exp(-(row - h)^2 / 2s^2)
    # (derivative across, y up so the sign flips) and b(col) = exp(-(col - h)^2 / 2(3s)^2); its mean
    # is 0 because a is odd, so the reference's normalise only divides by sum|a| * sum|b|.
    scale, half = math.sqrt(2), SIZE // 2
    offsets = np.arange(SIZE) - half
    across = offsets * np.exp(-(offsets**2) / (2 * scale**2))
    along = np.exp(-(offsets**2) / (2 * (3 * scale) ** 2))
    expected = math.exp(-1 / (2 * scale**2)) / (np.abs(across).sum() * along.sum())
    kernel = as64(banks.get("lm", size=SIZE))[0]
    assert kernel[half + 1, half] == pytest.approx(expected, rel=1e-6)
    assert kernel[half - 1, half] == pytest.approx(-expected, rel=1e-6)


def test_lm_gaussian_is_mean_subtracted_like_the_reference():
    kernel = as64(banks.get("lm", size=SIZE))[36]
    offsets = np.arange(SIZE) - SIZE // 2
    gaussian = np.exp(-(offsets[:, None] ** 2 + offsets[None] ** 2) / (2 * 2.0))  # sigma sqrt(2)
    gaussian -= gaussian.mean()
    np.testing.assert_allclose(kernel, gaussian / np.abs(gaussian).sum(), atol=1e-8)


# --- Schmid -----------------------------------------------------------------------------------


def test_schmid_pairs_and_rotation_invariance():
    bank = banks.get("schmid", size=SIZE)
    assert [(f["sigma"], f["tau"]) for f in bank.filters] == [
        (2, 1), (4, 1), (4, 2), (6, 1), (6, 2), (6, 3), (8, 1), (8, 2), (8, 3), (10, 1), (10, 2), (10, 3), (10, 4)
    ]  # fmt: skip
    kernels = as64(bank)
    for kernel in kernels:
        for symmetric in (kernel.T, kernel[::-1], kernel[:, ::-1]):
            np.testing.assert_allclose(kernel, symmetric, atol=1e-8)


def test_schmid_value_from_its_definition():
    sigma, tau, half = 6.0, 2.0, SIZE // 2
    raw = np.array(
        [[math.cos(math.pi * tau * math.hypot(i, j) / sigma) * math.exp(-(i * i + j * j) / (2 * sigma**2))
          for j in range(-half, half + 1)] for i in range(-half, half + 1)]
    )  # fmt: skip
    raw -= raw.mean()
    kernel = as64(banks.get("schmid", size=SIZE))[4]
    np.testing.assert_allclose(kernel, raw / np.abs(raw).sum(), atol=1e-8)


# --- RFS / MR8 --------------------------------------------------------------------------------


def test_mr8_grouping():
    mr8, rfs = banks.get("mr8", size=SIZE), banks.get("rfs", size=SIZE)
    np.testing.assert_array_equal(mr8.weight, rfs.weight)
    assert rfs.reduce is None
    assert rfs.reduce_groups is None
    assert mr8.reduce == 6
    assert mr8.reduce_groups == (6, 6, 6, 6, 6, 6, 1, 1)
    assert [f["sigma"] for f in mr8.filters[0:18:6]] == [[3.0, 1.0], [6.0, 2.0], [12.0, 4.0]]
    start = 0
    for size in mr8.reduce_groups:  # a group is one (type, scale) over its orientations
        group = mr8.filters[start : start + size]
        assert len({(f["name"], str(f["sigma"])) for f in group}) == 1
        assert [f.get("orientation", 0.0) for f in group] == [math.pi * i / 6 for i in range(size)]
        start += size
    assert [(f["name"], f["sigma"]) for f in mr8.filters[36:]] == [
        ("gaussian", 10.0),
        ("log", 10.0),
    ]


def test_mr8_bar_responses_do_not_change_under_a_quarter_turn():
    image = np.random.default_rng(2).standard_normal((SIZE, SIZE))
    bank = banks.get("mr8", size=SIZE)
    kernels = as64(bank)

    def mr8_at_centre(picture: np.ndarray) -> np.ndarray:
        responses = (kernels * picture).sum(axis=(1, 2))  # correlation at the centre pixel
        bounds = np.cumsum((0, *bank.reduce_groups))
        return np.array([responses[a:b].max() for a, b in itertools.pairwise(bounds)])

    before, after = mr8_at_centre(image), mr8_at_centre(np.rot90(image))
    np.testing.assert_allclose(after[3:], before[3:], atol=1e-6)  # bars (even) and the two blobs
