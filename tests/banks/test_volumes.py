"""3-D banks (``ndim: 3``, issue #19): each filter correlated with a small volume against
``scipy.ndimage`` (mirror borders), per-axis and physical sigmas, 3-D sizes and limits, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage as ndi

import featuremap.banks as banks
from featuremap.errors import InputError

VOLUME = np.random.default_rng(19).standard_normal((12, 15, 17))
#: Anisotropic sigmas [sz, sy, sx]: EM-like thin z, and three different sides.
ANISOTROPIC = [[0.5, 2.0, 2.0], [1.0, 1.6, 3.5]]


def correlate(kernel: np.ndarray) -> np.ndarray:
    """A 3-D bank filter applied as the engine does (cross-correlation), mirror borders."""
    return ndi.correlate(VOLUME, kernel.astype(np.float64), mode="mirror")


def assert_relative(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal within 1e-5 of the response's scale (the bank is float32)."""
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def unfolding_rank_ratio(kernel: np.ndarray, axis: int) -> float:
    """Second over first singular value of the kernel unfolded along ``axis``: 0 when rank 1."""
    unfolded = np.moveaxis(kernel.astype(np.float64), axis, 0).reshape(kernel.shape[axis], -1)
    singular = np.linalg.svd(unfolded, compute_uv=False)
    return singular[1] / singular[0]


@pytest.mark.parametrize("sigma", ANISOTROPIC)
def test_gaussian_derivatives_equal_scipy_gaussian_filter(sigma):
    bank = banks.get("gaussian", ndim=3, sigmas=[sigma])
    assert bank.ndim == 3
    assert bank.kernel_size == tuple(2 * int(4 * s + 0.5) + 1 for s in sigma)
    assert [f["order"] for f in bank.filters] == [
        [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1],
        [2, 0, 0], [1, 1, 0], [1, 0, 1], [0, 2, 0], [0, 1, 1], [0, 0, 2],
    ]  # fmt: skip
    assert bank.filters[5] == {"name": "gaussian_dzy", "sigma": sigma, "order": [1, 1, 0]}
    for kernel, description in zip(bank.weight[:, 0], bank.filters, strict=True):
        expected = ndi.gaussian_filter(VOLUME, sigma, order=description["order"], mode="mirror")
        assert_relative(correlate(kernel), expected)
        # the outer product of three 1-D kernels: every unfolding has rank 1
        assert max(unfolding_rank_ratio(kernel, axis) for axis in range(3)) < 1e-6


def test_log_and_dog_equal_scipy():
    log = banks.get("log", ndim=3, sigmas=ANISOTROPIC)
    dog = banks.get("dog", ndim=3, sigmas=ANISOTROPIC, k=1.6)
    for index, sigma in enumerate(ANISOTROPIC):
        assert_relative(
            correlate(log.weight[index, 0]), ndi.gaussian_laplace(VOLUME, sigma, mode="mirror")
        )
        wide = [1.6 * s for s in sigma]
        expected = ndi.gaussian_filter(VOLUME, sigma, mode="mirror") - ndi.gaussian_filter(
            VOLUME, wide, mode="mirror"
        )
        assert_relative(correlate(dog.weight[index, 0]), expected)
    # the common size is the largest radius on each axis: 3.5 * 1.6 on x
    assert dog.kernel_size == (2 * int(4 * 1.6 + 0.5) + 1, 2 * int(4 * 3.2 + 0.5) + 1, 45)


def test_per_axis_sigma_in_2d_and_a_fixed_size_per_axis():
    bank = banks.get("gaussian", sigmas=[[1.0, 2.5]], orders=[[0, 1]], size=[5, 9])
    assert bank.weight.shape == (1, 1, 5, 9)
    image = VOLUME[0]
    expected = ndi.gaussian_filter(image, [1.0, 2.5], order=[0, 1], mode="mirror", radius=[2, 4])
    actual = ndi.correlate(image, bank.weight[0, 0].astype(np.float64), mode="mirror")
    assert_relative(actual, expected)


def test_physical_sigmas_are_pixels_times_the_spacing():
    spacing = [40.0, 4.0, 4.0]  # nm, EM voxels
    physical = banks.get(
        "gaussian",
        ndim=3,
        sigmas=[[20.0, 8.0, 8.0], 8.0],
        sigma_units="physical",
        spacing=spacing,
    )
    pixels = banks.get("gaussian", ndim=3, sigmas=[[0.5, 2.0, 2.0], [0.2, 2.0, 2.0]])
    np.testing.assert_array_equal(physical.weight, pixels.weight)
    assert physical.filters[0] == {
        "name": "gaussian",
        "sigma": [0.5, 2.0, 2.0],
        "sigma_physical": [20.0, 8.0, 8.0],
        "order": [0, 0, 0],
    }
    assert physical.filters[10]["sigma_physical"] == 8.0
    assert physical.params["sigma_units"] == "physical"
    assert physical.params["spacing"] == spacing
    rebuilt = banks.get("gaussian", **json.loads(json.dumps(physical.params)))
    np.testing.assert_array_equal(rebuilt.weight, physical.weight)
    # the other sigma banks the same way; an isotropic result is described by one number
    for name in ("log", "dog", "ilastik"):
        in_units = banks.get(name, sigmas=[3.0], sigma_units="physical", spacing=1.5)
        np.testing.assert_array_equal(in_units.weight, banks.get(name, sigmas=[2.0]).weight)
        assert in_units.filters[0]["sigma"] == 2.0
        assert in_units.filters[0]["sigma_physical"] == 3.0


def test_spacing_is_ignored_and_not_recorded_for_pixel_sigmas():
    bank = banks.get("log", sigmas=[1.0], spacing=[0.5, 0.5])
    assert bank.params == {"sigmas": [1.0], "size": None, "truncate": 4.0}
    np.testing.assert_array_equal(bank.weight, banks.get("log", sigmas=[1.0]).weight)


def test_ilastik_3d_filters():
    bank = banks.get("ilastik", ndim=3, sigmas=[[0.5, 1.0, 1.5]])
    names = [f["name"] for f in bank.filters]
    assert names == [
        "gaussian", "log", "gradient_z", "gradient_y", "gradient_x",
        "hessian_zz", "hessian_yz", "hessian_xz", "hessian_yy", "hessian_xy", "hessian_xx", "dog",
    ]  # fmt: skip
    for kernel, description in zip(bank.weight[:, 0], bank.filters, strict=True):
        if "order" in description:
            expected = ndi.gaussian_filter(
                VOLUME, [0.5, 1.0, 1.5], order=description["order"], mode="mirror"
            )
            assert_relative(correlate(kernel), expected)


def test_box_identity_random_in_3d():
    box = banks.get("box", ndim=3, size=[1, 3, 5])
    assert box.weight.shape == (1, 1, 1, 3, 5)
    assert_relative(
        correlate(box.weight[0, 0]), ndi.uniform_filter(VOLUME, (1, 3, 5), mode="mirror")
    )
    identity = banks.get("identity", ndim=3, size=[1, 3, 5])
    np.testing.assert_array_equal(correlate(identity.weight[0, 0]), VOLUME)
    random = banks.get("random", ndim=3, n=4, size=3, in_channels=2)
    assert random.weight.shape == (4, 2, 3, 3, 3)
    assert random.params["std"] == 1 / np.sqrt(2 * 27)
    assert random.params["ndim"] == 3


def test_edges_in_3d_equal_scipy():
    for name, reference in (("sobel", ndi.sobel), ("prewitt", ndi.prewitt)):
        bank = banks.get(name, ndim=3)
        assert [f["name"] for f in bank.filters] == [f"{name}_z", f"{name}_y", f"{name}_x"]
        for axis in range(3):
            assert_relative(
                correlate(bank.weight[axis, 0]), reference(VOLUME, axis=axis, mode="mirror")
            )
    laplacian = banks.get("laplacian", ndim=3)
    assert laplacian.params == {"neighbours": 6, "ndim": 3}
    assert_relative(correlate(laplacian.weight[0, 0]), ndi.laplace(VOLUME, mode="mirror"))
    every = banks.get("laplacian", ndim=3, neighbours=26).weight[0, 0]
    assert every.sum() == 0
    assert every[1, 1, 1] == -26


def test_expanding_a_3d_bank_to_channels():
    bank = banks.get("gaussian", ndim=3, sigmas=[1.0], orders=[[0, 0, 0], [0, 0, 1]])
    expanded = bank.for_channels(3)
    assert expanded.weight.shape == (6, 1, 9, 9, 9)
    assert [f["channel"] for f in expanded.filters] == [0, 0, 1, 1, 2, 2]
    assert bank.for_channels(2, mode="sum").weight.shape == (2, 2, 9, 9, 9)
    with pytest.raises(
        InputError, match=r"bank 'box' expanded to 5 input channels \(sum\) would hold 1 x 5 x "
    ):
        banks.get("box", ndim=3, size=[15, 1025, 1025]).for_channels(5, mode="sum")


REFUSALS = [
    ("gaussian", {"ndim": 4}, r"'ndim' must be one of 2, 3, got 4"),
    (
        "box",
        {"ndim": 3, "size": [3, 3]},
        r"'size' must give one value per spatial axis, \[z, y, x\]",
    ),
    (
        "gaussian",
        {"ndim": 3, "orders": [[0, 1]]},
        r"'orders' must be \[oz, oy, ox\] lists for ndim 3, got \[\[0, 1\]\]",
    ),
    ("gaussian", {"ndim": 3, "orders": [[1, 1, 1]]}, r"bad or repeated \[1, 1, 1\]"),
    ("gaussian", {"ndim": 3, "orders": [[0, 0, 1], [0, 1]]}, r"bad or repeated \[0, 1\]"),
    (
        "gaussian",
        {"ndim": 3, "sigmas": [[1.0, 2.0]]},
        (
            r"'sigmas' \(each element\) must give one value per spatial axis, \[z, y, x\] for "
            r"ndim 3, got \[1.0, 2.0\]; set ndim: 2 for a 2-D bank"
        ),
    ),
    ("log", {"sigmas": [[1.0, 2.0, 3.0, 4.0]]}, r"or a list \[y, x\] or \[z, y, x\] of them"),
    ("dog", {"sigmas": [[1.0, -2.0]]}, r"'sigmas' \(each element\) \(each axis\) must be a finite"),
    (
        "gaussian",
        {"sigma_units": "physical"},
        (
            r"'sigma_units' is 'physical' but the input's pixel spacing is not known .*give sigma "
            r"in pixels .* or read an input with physical units"
        ),
    ),
    (
        "ilastik",
        {"ndim": 3, "sigma_units": "physical", "spacing": [4.0, 4.0]},
        r"'spacing' must give one value per spatial axis, \[z, y, x\] for ndim 3, got \[4.0, 4.0\]",
    ),
    ("log", {"sigma_units": "microns"}, r"'sigma_units' must be one of 'pixels', 'physical'"),
    ("dog", {"spacing": [1.0, 0.0]}, r"'spacing' \(each axis\) must be a finite number > 0"),
    (
        "box",
        {"ndim": 3, "size": 257},
        r"bank 'box' would hold 1 x 1 x 257 x 257 x 257 = 16974593 weights; at most 16777216",
    ),
    (
        "gaussian",
        {"ndim": 3, "sigmas": [[1.0, 1.0, 200.0]]},
        r"kernel size 2\*int\(truncate\*sigma\+0\.5\)\+1 must be <= 1025, got 1601 .*sigma 200",
    ),
    ("identity", {"size": [1, 2]}, r"'size' \(each axis\) must be an odd integer"),
    (
        "laplacian",
        {"ndim": 3, "neighbours": 8},
        r"'neighbours' must be 4 or 8 for ndim 2; 6 or 26 for ndim 3, got 8 with ndim 3",
    ),
]


@pytest.mark.parametrize(("name", "params", "pattern"), REFUSALS)
def test_refusals_are_one_line_input_errors(name, params, pattern):
    with pytest.raises(InputError, match=pattern) as caught:
        banks.get(name, **params)
    assert "\n" not in str(caught.value)


def test_describe_lists_the_volume_parameters():
    for name in ("gaussian", "log", "dog", "ilastik"):
        parameters = [row[0] for row in banks.describe(name).parameters]
        assert parameters[-3:] == ["ndim", "sigma_units", "spacing"]
    for name in ("box", "identity", "random", "sobel", "scharr", "prewitt", "laplacian"):
        assert [row[0] for row in banks.describe(name).parameters][-1] == "ndim"
