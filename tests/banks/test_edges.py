"""The 3x3 edge filters (``featuremap.banks.edges``: sobel, prewitt, scharr, laplacian) against
SciPy and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.filters
from support.bank_reference import IMAGE, assert_float32_close, correlate, second_singular_ratio

import featuremap.banks as banks


@pytest.mark.parametrize("name", ["sobel", "prewitt"])
def test_edges_equal_scipy(name):
    bank = banks.get(name)
    reference = getattr(ndi, name)
    assert [f["name"] for f in bank.filters] == [f"{name}_y", f"{name}_x"]
    for kernel, axis in zip(bank.weight[:, 0], (0, 1), strict=False):
        np.testing.assert_allclose(
            correlate(IMAGE, kernel), reference(IMAGE, axis=axis, mode="constant"), atol=1e-12
        )


@pytest.mark.parametrize("name", ["sobel", "scharr", "prewitt"])
def test_normalized_edges_equal_skimage(name):
    bank = banks.get(name, normalize=True)
    reference = getattr(skimage.filters, name)
    for kernel, axis in zip(bank.weight[:, 0], (0, 1), strict=False):
        assert_float32_close(correlate(IMAGE, kernel), reference(IMAGE, axis=axis, mode="constant"))
        assert second_singular_ratio(kernel) < 1e-7


def test_scharr_unnormalized_weights():
    kernel = banks.get("scharr").weight[1, 0]
    np.testing.assert_array_equal(kernel, [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]])


def test_laplacian():
    four = banks.get("laplacian").weight[0, 0]
    np.testing.assert_allclose(
        correlate(IMAGE, four), ndi.laplace(IMAGE, mode="constant"), atol=1e-12
    )
    eight = banks.get("laplacian", neighbours=8).weight[0, 0]
    assert eight.sum() == 0
    assert eight[1, 1] == -8
    assert (np.delete(eight.ravel(), 4) == 1).all()
