"""The ``ilastik`` bank (``featuremap.banks.ilastik``) against the SciPy definitions of its filters."""

from __future__ import annotations

import scipy.ndimage as ndi
from support.bank_reference import IMAGE, assert_float32_close, correlate

import featuremap.banks as banks


def test_ilastik_filters_equal_their_scipy_definitions():
    bank = banks.get("ilastik", sigmas=[0.7, 1.6])
    names = [
        "gaussian",
        "log",
        "gradient_y",
        "gradient_x",
        "hessian_yy",
        "hessian_xy",
        "hessian_xx",
        "dog",
    ]
    assert [f["name"] for f in bank.filters] == names * 2
    for kernel, description in zip(bank.weight[:, 0], bank.filters, strict=False):
        sigma, name = description["sigma"], description["name"]
        if "order" in description:
            expected = ndi.gaussian_filter(
                IMAGE, sigma, order=description["order"], mode="constant"
            )
        elif name == "log":
            expected = ndi.gaussian_laplace(IMAGE, sigma, mode="constant")
        else:
            expected = ndi.gaussian_filter(IMAGE, sigma, mode="constant") - ndi.gaussian_filter(
                IMAGE, 0.66 * sigma, mode="constant"
            )
        assert_float32_close(correlate(IMAGE, kernel), expected)


def test_ilastik_defaults_and_feature_subset():
    default = banks.get("ilastik")
    assert default.params["sigmas"] == [0.3, 0.7, 1.0, 1.6, 3.5, 5.0]
    assert default.weight.shape == (6 * 8, 1, 41, 41)
    subset = banks.get("ilastik", sigmas=[1.0], features=["hessian", "gaussian"])
    assert [f["name"] for f in subset.filters] == [
        "gaussian",
        "hessian_yy",
        "hessian_xy",
        "hessian_xx",
    ]
