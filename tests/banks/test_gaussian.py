"""The Gaussian family (``featuremap.banks.gaussian``: gaussian derivatives, log, dog) against
SciPy's ``gaussian_filter`` / ``gaussian_laplace``."""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi
from support.bank_reference import IMAGE, assert_float32_close, correlate, second_singular_ratio

import featuremap.banks as banks


def test_gaussian_derivatives_equal_scipy_gaussian_filter():
    bank = banks.get("gaussian", sigmas=[0.8, 2.5])
    assert len(bank.filters) == 12
    for kernel, description in zip(bank.weight[:, 0], bank.filters, strict=False):
        expected = ndi.gaussian_filter(
            IMAGE, description["sigma"], order=description["order"], mode="constant"
        )
        assert_float32_close(correlate(IMAGE, kernel), expected)
        # exactly separable: an outer product of two 1-D kernels, so rank 1 to float32 rounding
        assert second_singular_ratio(kernel) < 1e-6


def test_gaussian_fixed_size_uses_that_radius_for_every_sigma():
    bank = banks.get("gaussian", sigmas=[1.0, 3.0], orders=[[0, 0], [0, 1]], size=7)
    assert bank.weight.shape == (4, 1, 7, 7)
    for kernel, description in zip(bank.weight[:, 0], bank.filters, strict=False):
        expected = ndi.gaussian_filter(
            IMAGE, description["sigma"], order=description["order"], mode="constant", radius=3
        )
        assert_float32_close(correlate(IMAGE, kernel), expected)


def test_gaussian_weights_are_scipy_kernels_mirrored_and_positive_to_the_right():
    bank = banks.get("gaussian", sigmas=[1.5], orders=[[0, 1]])
    kernel = bank.weight[0, 0]
    centre = kernel.shape[0] // 2
    impulse = np.zeros(kernel.shape)
    impulse[centre, centre] = 1
    response = ndi.gaussian_filter(
        impulse, 1.5, order=(0, 1), mode="constant"
    )  # the convolution kernel
    np.testing.assert_allclose(kernel, response[::-1, ::-1], atol=1e-7)
    assert kernel[centre, centre + 1] > 0 > kernel[centre, centre - 1]
    assert bank.filters[0]["name"] == "gaussian_dx"


def test_log_equals_scipy_gaussian_laplace():
    bank = banks.get("log", sigmas=[1.0, 2.2])
    for kernel, sigma in zip(bank.weight[:, 0], [1.0, 2.2], strict=False):
        assert_float32_close(
            correlate(IMAGE, kernel), ndi.gaussian_laplace(IMAGE, sigma, mode="constant")
        )
        assert kernel[kernel.shape[0] // 2, kernel.shape[1] // 2] < 0


def test_dog_equals_difference_of_scipy_gaussians():
    bank = banks.get("dog", sigmas=[1.0, 2.0], k=1.6)
    assert bank.weight.shape[-1] == 2 * int(4 * 3.2 + 0.5) + 1
    for kernel, sigma in zip(bank.weight[:, 0], [1.0, 2.0], strict=False):
        expected = ndi.gaussian_filter(IMAGE, sigma, mode="constant") - ndi.gaussian_filter(
            IMAGE, 1.6 * sigma, mode="constant"
        )
        assert_float32_close(correlate(IMAGE, kernel), expected)
        assert abs(kernel.astype(np.float64).sum()) < 1e-6  # both Gaussians sum to 1
