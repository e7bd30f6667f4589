"""The ``gabor`` bank (``featuremap.banks.gabor``) against scikit-image's ``gabor_kernel``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.filters

import featuremap.banks as banks


@pytest.mark.parametrize(("bandwidth", "sigma"), [(1.0, None), (0.7, None), (1.0, 3.0)])
def test_gabor_matches_skimage_real_and_imaginary_parts(bandwidth, sigma):
    bank = banks.get(
        "gabor", orientations=5, frequencies=[0.08, 0.25], bandwidth=bandwidth, sigma=sigma
    )
    size = bank.weight.shape[-1]
    assert len(bank.filters) == 2 * 5 * 2
    for index, description in enumerate(bank.filters):
        reference = skimage.filters.gabor_kernel(
            description["frequency"], theta=description["orientation"], bandwidth=bandwidth,
            sigma_x=sigma, sigma_y=sigma,
        )  # fmt: skip
        part = reference.real if description["phase"] == 0 else reference.imag
        half_y, half_x = part.shape[0] // 2, part.shape[1] // 2
        # the default size covers skimage's extent
        assert half_y <= size // 2
        assert half_x <= size // 2
        centre = size // 2
        window = bank.weight[
            index, 0, centre - half_y : centre + half_y + 1, centre - half_x : centre + half_x + 1
        ]
        np.testing.assert_allclose(window, part, rtol=0, atol=1e-6 * np.abs(part).max())


def test_gabor_parameters():
    bank = banks.get("gabor", size=15, angles=[0.0, math.pi / 3], frequencies=0.2, phases=[0.0])
    assert bank.weight.shape == (2, 1, 15, 15)
    assert bank.params["angles"] == [0.0, math.pi / 3]
    assert bank.params["orientations"] is None
    assert [f["orientation"] for f in bank.filters] == [0.0, math.pi / 3]
    default = banks.get("gabor")
    assert default.params["orientations"] == 8
    assert default.params["size"] == 2 * math.ceil(3 * default.filters[0]["sigma"]) + 1
    # frequency-major, then orientation, then phase
    assert [(f["frequency"], f["phase"]) for f in default.filters[:4]] == [
        (0.1, 0.0),
        (0.1, math.pi / 2),
    ] * 2
