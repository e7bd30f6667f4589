"""Banks with a published reference implementation: checked against scikit-image and SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.filters

import featuremap.banks as banks

IMAGE = np.random.default_rng(5).standard_normal((40, 44))


def correlate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """A bank filter applied as the engine does (cross-correlation), zero padding, float64."""
    return ndi.correlate(image, kernel.astype(np.float64), mode="constant")


def assert_float32_close(actual: np.ndarray, expected: np.ndarray) -> None:
    # The bank is float32: allow its rounding, relative to the response's scale.
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-6 * np.abs(expected).max())


def second_singular_ratio(kernel: np.ndarray) -> float:
    singular = np.linalg.svd(kernel.astype(np.float64), compute_uv=False)
    return singular[1] / singular[0]


# --- gabor -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("bandwidth", "sigma"), [(1.0, None), (0.7, None), (1.0, 3.0)])
def test_gabor_matches_skimage_real_and_imaginary_parts(bandwidth, sigma):
    bank = banks.get("gabor", orientations=5, frequencies=[0.08, 0.25], bandwidth=bandwidth, sigma=sigma)
    size = bank.weight.shape[-1]
    assert len(bank.filters) == 2 * 5 * 2
    for index, description in enumerate(bank.filters):
        reference = skimage.filters.gabor_kernel(
            description["frequency"], theta=description["orientation"], bandwidth=bandwidth,
            sigma_x=sigma, sigma_y=sigma,
        )  # fmt: skip
        part = reference.real if description["phase"] == 0 else reference.imag
        half_y, half_x = part.shape[0] // 2, part.shape[1] // 2
        assert half_y <= size // 2 and half_x <= size // 2  # the default size covers skimage's extent
        centre = size // 2
        window = bank.weight[index, 0, centre - half_y : centre + half_y + 1, centre - half_x : centre + half_x + 1]
        np.testing.assert_allclose(window, part, rtol=0, atol=1e-6 * np.abs(part).max())


def test_gabor_parameters():
    bank = banks.get("gabor", size=15, angles=[0.0, math.pi / 3], frequencies=0.2, phases=[0.0])
    assert bank.weight.shape == (2, 1, 15, 15)
    assert bank.params["angles"] == [0.0, math.pi / 3] and bank.params["orientations"] is None
    assert [f["orientation"] for f in bank.filters] == [0.0, math.pi / 3]
    default = banks.get("gabor")
    assert default.params["orientations"] == 8 and default.params["size"] == 2 * math.ceil(3 * default.filters[0]["sigma"]) + 1
    # frequency-major, then orientation, then phase
    assert [(f["frequency"], f["phase"]) for f in default.filters[:4]] == [(0.1, 0.0), (0.1, math.pi / 2)] * 2


# --- gaussian family -------------------------------------------------------------------------


def test_gaussian_derivatives_equal_scipy_gaussian_filter():
    bank = banks.get("gaussian", sigmas=[0.8, 2.5])
    assert len(bank.filters) == 12
    for kernel, description in zip(bank.weight[:, 0], bank.filters):
        expected = ndi.gaussian_filter(IMAGE, description["sigma"], order=description["order"], mode="constant")
        assert_float32_close(correlate(IMAGE, kernel), expected)
        # exactly separable: an outer product of two 1-D kernels, so rank 1 to float32 rounding
        assert second_singular_ratio(kernel) < 1e-6


def test_gaussian_fixed_size_uses_that_radius_for_every_sigma():
    bank = banks.get("gaussian", sigmas=[1.0, 3.0], orders=[[0, 0], [0, 1]], size=7)
    assert bank.weight.shape == (4, 1, 7, 7)
    for kernel, description in zip(bank.weight[:, 0], bank.filters):
        expected = ndi.gaussian_filter(IMAGE, description["sigma"], order=description["order"], mode="constant", radius=3)
        assert_float32_close(correlate(IMAGE, kernel), expected)


def test_gaussian_weights_are_scipy_kernels_mirrored_and_positive_to_the_right():
    bank = banks.get("gaussian", sigmas=[1.5], orders=[[0, 1]])
    kernel = bank.weight[0, 0]
    centre = kernel.shape[0] // 2
    impulse = np.zeros(kernel.shape)
    impulse[centre, centre] = 1
    response = ndi.gaussian_filter(impulse, 1.5, order=(0, 1), mode="constant")  # the convolution kernel
    np.testing.assert_allclose(kernel, response[::-1, ::-1], atol=1e-7)
    assert kernel[centre, centre + 1] > 0 > kernel[centre, centre - 1]
    assert bank.filters[0]["name"] == "gaussian_dx"


def test_log_equals_scipy_gaussian_laplace():
    bank = banks.get("log", sigmas=[1.0, 2.2])
    for kernel, sigma in zip(bank.weight[:, 0], [1.0, 2.2]):
        assert_float32_close(correlate(IMAGE, kernel), ndi.gaussian_laplace(IMAGE, sigma, mode="constant"))
        assert kernel[kernel.shape[0] // 2, kernel.shape[1] // 2] < 0


def test_dog_equals_difference_of_scipy_gaussians():
    bank = banks.get("dog", sigmas=[1.0, 2.0], k=1.6)
    assert bank.weight.shape[-1] == 2 * int(4 * 3.2 + 0.5) + 1
    for kernel, sigma in zip(bank.weight[:, 0], [1.0, 2.0]):
        expected = ndi.gaussian_filter(IMAGE, sigma, mode="constant") - ndi.gaussian_filter(IMAGE, 1.6 * sigma, mode="constant")
        assert_float32_close(correlate(IMAGE, kernel), expected)
        assert abs(kernel.astype(np.float64).sum()) < 1e-6  # both Gaussians sum to 1


# --- 3x3 edge filters --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sobel", "prewitt"])
def test_edges_equal_scipy(name):
    bank = banks.get(name)
    reference = getattr(ndi, name)
    assert [f["name"] for f in bank.filters] == [f"{name}_y", f"{name}_x"]
    for kernel, axis in zip(bank.weight[:, 0], (0, 1)):
        np.testing.assert_allclose(correlate(IMAGE, kernel), reference(IMAGE, axis=axis, mode="constant"), atol=1e-12)


@pytest.mark.parametrize("name", ["sobel", "scharr", "prewitt"])
def test_normalized_edges_equal_skimage(name):
    bank = banks.get(name, normalize=True)
    reference = getattr(skimage.filters, name)
    for kernel, axis in zip(bank.weight[:, 0], (0, 1)):
        assert_float32_close(correlate(IMAGE, kernel), reference(IMAGE, axis=axis, mode="constant"))
        assert second_singular_ratio(kernel) < 1e-7


def test_scharr_unnormalized_weights():
    kernel = banks.get("scharr").weight[1, 0]
    np.testing.assert_array_equal(kernel, [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]])


def test_laplacian():
    four = banks.get("laplacian").weight[0, 0]
    np.testing.assert_allclose(correlate(IMAGE, four), ndi.laplace(IMAGE, mode="constant"), atol=1e-12)
    eight = banks.get("laplacian", neighbours=8).weight[0, 0]
    assert eight.sum() == 0 and eight[1, 1] == -8 and (np.delete(eight.ravel(), 4) == 1).all()


# --- ilastik ---------------------------------------------------------------------------------


def test_ilastik_filters_equal_their_scipy_definitions():
    bank = banks.get("ilastik", sigmas=[0.7, 1.6])
    names = ["gaussian", "log", "gradient_y", "gradient_x", "hessian_yy", "hessian_xy", "hessian_xx", "dog"]
    assert [f["name"] for f in bank.filters] == names * 2
    for kernel, description in zip(bank.weight[:, 0], bank.filters):
        sigma, name = description["sigma"], description["name"]
        if "order" in description:
            expected = ndi.gaussian_filter(IMAGE, sigma, order=description["order"], mode="constant")
        elif name == "log":
            expected = ndi.gaussian_laplace(IMAGE, sigma, mode="constant")
        else:
            expected = ndi.gaussian_filter(IMAGE, sigma, mode="constant") - ndi.gaussian_filter(IMAGE, 0.66 * sigma, mode="constant")
        assert_float32_close(correlate(IMAGE, kernel), expected)


def test_ilastik_defaults_and_feature_subset():
    default = banks.get("ilastik")
    assert default.params["sigmas"] == [0.3, 0.7, 1.0, 1.6, 3.5, 5.0]
    assert default.weight.shape == (6 * 8, 1, 41, 41)
    subset = banks.get("ilastik", sigmas=[1.0], features=["hessian", "gaussian"])
    assert [f["name"] for f in subset.filters] == ["gaussian", "hessian_yy", "hessian_xy", "hessian_xx"]
