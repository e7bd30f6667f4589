"""fastfilters2's kernels (``featuremap.banks.fastfilters``, the ``gaussian`` bank's
``kernels: fastfilters``) and the float64 reference of the pixel features
(``tests/support/pixel_reference.py``, DESIGN section 8) against ``fastfilters2.compute_filters``
and SciPy's ``gaussian_filter``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from support import pixel_reference as ref
from support.bank_reference import second_singular_ratio

import featuremap.banks as banks
from featuremap.banks.fastfilters import fastfilters_kernel_1d, fastfilters_radius
from featuremap.banks.gaussian import derivative_kernel, derivative_radius, gaussian_1d, kernel_1d
from featuremap.errors import InputError

SIGMAS = ref.ILASTIK_SIGMAS


def _camera() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return data.camera().astype(np.float32)


# -- the kernels -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", SIGMAS)
def test_fastfilters_kernels_follow_their_definition(sigma):
    for order, expected_radius in enumerate(
        [np.ceil(3 * sigma), np.ceil(3.5 * sigma), np.ceil(4 * sigma)]
    ):
        w = fastfilters_kernel_1d(sigma, order)
        radius = fastfilters_radius(sigma, order)
        assert radius == expected_radius == ref.kernel_radius(sigma, order, "fastfilters")
        x = np.arange(-radius, radius + 1)
        assert w.shape == (2 * radius + 1,)
        # the package's kernels are the reference's (built independently)
        np.testing.assert_allclose(
            w, ref.kernel_1d(sigma, order, "fastfilters"), rtol=0, atol=1e-15
        )
        if order == 0:
            assert w.sum() == pytest.approx(1, abs=1e-15)
            np.testing.assert_array_equal(w, w[::-1])
        elif order == 1:
            assert (x * w).sum() == pytest.approx(1, abs=1e-14)
            np.testing.assert_array_equal(w, -w[::-1])
            assert w[radius + 1] > 0  # +d/dx: positive to the right
        else:
            assert w.sum() == pytest.approx(0, abs=1e-15)
            assert (x * x * w).sum() == pytest.approx(2, abs=1e-13)
            np.testing.assert_array_equal(w, w[::-1])
            assert w[radius] < 0


@pytest.mark.parametrize("sigma", [0.3, 1.0, 3.5])
def test_scipy_family_is_scipys_kernels(sigma):
    for order in range(3):
        radius = derivative_radius(sigma, order, kernels="scipy")
        assert radius == int(4 * sigma + 0.5) == ref.kernel_radius(sigma, order, "scipy")
        w = kernel_1d(sigma, order, kernels="scipy")
        np.testing.assert_array_equal(w, gaussian_1d(sigma, order, radius))
        np.testing.assert_allclose(w, ref.kernel_1d(sigma, order, "scipy"), rtol=0, atol=1e-15)
        impulse = np.zeros(2 * radius + 1)
        impulse[radius] = 1
        convolution = ndi.gaussian_filter1d(impulse, sigma, order=order, mode="constant")
        np.testing.assert_allclose(w, convolution[::-1], rtol=0, atol=1e-15)


def test_kernel_construction_refuses_bad_values_and_survives_tiny_sigma():
    with pytest.raises(InputError, match="sigma must be a finite number > 0"):
        fastfilters_kernel_1d(0.0, 0)
    with pytest.raises(InputError, match="order must be 0, 1 or 2"):
        fastfilters_kernel_1d(1.0, 3)
    with pytest.raises(InputError, match="kernels must be one of scipy, fastfilters"):
        kernel_1d(1.0, 0, kernels="vigra", radius=3)
    with pytest.raises(InputError, match="kernel size 2\\*ceil"):
        fastfilters_radius(1000.0, 2)
    # g(1) underflows for sigma 0.01: the kernels tend to the finite differences, without NaN
    np.testing.assert_allclose(fastfilters_kernel_1d(0.01, 1), [-0.5, 0, 0.5], atol=1e-15)
    assert np.isfinite(fastfilters_kernel_1d(0.01, 2)).all()


def test_derivative_kernel_is_rank_1_with_a_radius_per_axis():
    kernel = derivative_kernel([0.5, 2.0, 2.0], [2, 1, 0], kernels="fastfilters")
    assert kernel.shape == (2 * 2 + 1, 2 * 7 + 1, 2 * 6 + 1)  # ceil(4*0.5), ceil(3.5*2), ceil(3*2)
    expected = np.multiply.outer(
        np.multiply.outer(fastfilters_kernel_1d(0.5, 2), fastfilters_kernel_1d(2.0, 1)),
        fastfilters_kernel_1d(2.0, 0),
    )
    np.testing.assert_array_equal(kernel, expected)
    scipy_kernel = derivative_kernel([1.0, 1.5], [0, 1], kernels="scipy")
    assert scipy_kernel.shape == (9, 13)


# -- the gaussian bank with kernels: fastfilters -----------------------------------------------------


def test_gaussian_bank_scipy_default_is_unchanged():
    plain = banks.get("gaussian", sigmas=[0.7, 2.0])
    explicit = banks.get("gaussian", sigmas=[0.7, 2.0], kernels="scipy")
    assert "kernels" not in plain.params
    assert plain.params == explicit.params
    assert plain.weight.tobytes() == explicit.weight.tobytes()


def test_gaussian_bank_fastfilters_kernels_2d():
    bank = banks.get("gaussian", sigmas=[1.0, 1.6], kernels="fastfilters")
    assert bank.params["kernels"] == "fastfilters"
    assert bank.weight.shape == (12, 1, 2 * 7 + 1, 2 * 7 + 1)  # ceil(4 * 1.6) = 7
    image = _camera()[200:264, 100:180].astype(np.float64)
    for weight, description in zip(bank.weight[:, 0], bank.filters, strict=True):
        assert second_singular_ratio(weight) < 1e-6
        response = ndi.correlate(image, weight.astype(np.float64), mode="mirror")
        expected = ref.gaussian_derivative(
            image, description["sigma"], description["order"], "fastfilters"
        )
        np.testing.assert_allclose(response, expected, rtol=0, atol=2e-6 * np.abs(expected).max())
    rebuilt = banks.get("gaussian", **bank.params)
    assert rebuilt.weight.tobytes() == bank.weight.tobytes()


def test_gaussian_bank_fastfilters_kernels_3d_anisotropic():
    bank = banks.get(
        "gaussian",
        ndim=3,
        sigmas=[[0.5, 2.0, 2.0]],
        orders=[[0, 0, 0], [1, 0, 0], [0, 0, 2]],
        kernels="fastfilters",
    )
    # z: ceil(3.5 * 0.5) = 2 (order 1); y: ceil(3 * 2) = 6; x: ceil(4 * 2) = 8 (order 2)
    assert bank.weight.shape == (3, 1, 5, 13, 17)
    for weight, description in zip(bank.weight[:, 0], bank.filters, strict=True):
        kernel = derivative_kernel([0.5, 2.0, 2.0], description["order"], kernels="fastfilters")
        pads = [((s - k) // 2,) * 2 for s, k in zip(weight.shape, kernel.shape, strict=True)]
        np.testing.assert_allclose(weight, np.pad(kernel, pads), rtol=0, atol=1e-7)
    volume = np.random.default_rng(3).standard_normal((11, 20, 24))
    response = ndi.correlate(volume, bank.weight[1, 0].astype(np.float64), mode="mirror")
    expected = ref.gaussian_derivative(volume, [0.5, 2.0, 2.0], [1, 0, 0], "fastfilters")
    np.testing.assert_allclose(response, expected, rtol=0, atol=2e-6 * np.abs(expected).max())


def test_gaussian_bank_fastfilters_size_and_truncate():
    fixed = banks.get("gaussian", sigmas=[1.0], orders=[[0, 1]], size=5, kernels="fastfilters")
    assert fixed.weight.shape == (1, 1, 5, 5)
    expected = np.multiply.outer(fastfilters_kernel_1d(1.0, 0, 2), fastfilters_kernel_1d(1.0, 1, 2))
    np.testing.assert_allclose(fixed.weight[0, 0], expected, rtol=0, atol=1e-7)
    with pytest.raises(InputError, match="'truncate' applies to kernels: scipy only"):
        banks.get("gaussian", truncate=3.0, kernels="fastfilters")
    with pytest.raises(InputError, match="'kernels' must be one of 'scipy', 'fastfilters'"):
        banks.get("gaussian", kernels="vigra")


# -- the reference against fastfilters2 and SciPy --------------------------------------------------


@pytest.mark.parametrize("sigma", SIGMAS)
def test_reference_equals_fastfilters2_compute_filters(sigma):
    """Every channel of ``compute_filters`` (gaussian, gradient magnitude, LoG, Hessian eigenvalues
    descending, structure tensor eigenvalues descending), borders included, within 1e-5 of its
    feature's largest |value| (measured: <= 1e-6). Per channel within 1e-5 of the channel's own
    largest |value|, except a channel that float32 cannot resolve (max below 1e-6 of its feature's:
    the structure tensor's second eigenvalue at sigma 0.3, whose smoothing at 0.15 is nearly the
    identity, so T is nearly rank 1: true values <= 5e-6, fastfilters2's float32 noise 1e-3)."""
    fastfilters2 = pytest.importorskip("fastfilters2")
    image = _camera()
    actual = fastfilters2.compute_filters(image, sigma)
    expected, labels = ref.reference_features(
        image, [sigma], ref.FASTFILTERS2_FEATURES, 2, "fastfilters"
    )
    assert actual.shape == expected.shape == (7, *image.shape)
    assert labels[0] == f"gaussian σ={sigma:.3g}"
    assert labels[-1] == f"structure_tensor_eigenvalues σ={sigma:.3g} [1]"
    groups = {
        "gaussian": [0],
        "gradient_magnitude": [1],
        "log": [2],
        "hessian": [3, 4],
        "structure": [5, 6],
    }
    for channels in groups.values():
        scale = np.abs(expected[channels]).max()
        for channel in channels:
            error = np.abs(actual[channel] - expected[channel]).max()
            assert error <= 1e-5 * scale, (labels[channel], error / scale)
            own = np.abs(expected[channel]).max()
            if own >= 1e-6 * scale:
                assert error <= 1e-5 * own, (labels[channel], error / own)


def _gf(image, sigma, order):
    return ndi.gaussian_filter(image, sigma, order=order, truncate=4.0, mode="mirror")


def _scipy_definitions(image, sigma):
    """DESIGN section 8 written with ``gaussian_filter`` (2-D: closed-form eigenvalues)."""
    ndim = image.ndim
    unit = [tuple(int(a == b) for b in range(ndim)) for a in range(ndim)]
    gradient = [_gf(image, sigma, unit[a]) for a in range(ndim)]
    second = [
        [_gf(image, sigma, np.add(unit[a], unit[b]).tolist()) for b in range(ndim)]
        for a in range(ndim)
    ]
    half = np.asarray(sigma) / 2
    tensor = [[_gf(ga * gb, half, 0) for gb in gradient] for ga in gradient]

    def eigen(m):
        if ndim == 2:
            mean, diff = (m[0][0] + m[1][1]) / 2, (m[0][0] - m[1][1]) / 2
            root = np.sqrt(diff * diff + m[0][1] ** 2)
            return [mean + root, mean - root]
        return list(
            np.moveaxis(np.linalg.eigvalsh(np.stack([np.stack(r, -1) for r in m], -2)), -1, 0)[::-1]
        )

    return {
        "gaussian": [_gf(image, sigma, 0)],
        "log": [sum(second[a][a] for a in range(ndim))],
        "gradient_magnitude": [np.sqrt(sum(g * g for g in gradient))],
        "dog": [_gf(image, sigma, 0) - _gf(image, np.asarray(sigma) * 0.66, 0)],
        "structure_tensor_eigenvalues": eigen(tensor),
        "hessian_eigenvalues": eigen(second),
    }


@pytest.mark.parametrize(
    ("shape", "sigmas"), [((96, 80), [0.7, 1.6, 3.5]), ((14, 30, 26), [[0.6, 1.5, 1.5], 1.0])]
)
def test_scipy_reference_equals_gaussian_filter_definitions(shape, sigmas):
    image = ndi.gaussian_filter(np.random.default_rng(7).standard_normal(shape), 1.0) * 100
    values, labels = ref.reference_features(image, sigmas, None, len(shape), "scipy")
    expected = [
        value
        for name in ref.FEATURES
        for sigma in sigmas
        for value in _scipy_definitions(image, sigma)[name]
    ]
    assert values.shape == (len(expected), *shape)
    assert len(labels) == len(expected)
    for value, wanted, label in zip(values, expected, labels, strict=True):
        np.testing.assert_allclose(
            value, wanted, rtol=0, atol=1e-10 * np.abs(wanted).max(), err_msg=label
        )


def test_reference_default_sigmas_channel_order_and_labels():
    image = _camera()[::8, ::8]  # 64 x 64: every radius (at most 40) below the side
    values, labels = ref.reference_features(image)
    assert values.shape == (7 + 6 * 3 + 6 * 2 * 2, 64, 64)
    assert labels[:8] == [f"gaussian σ={s:.3g}" for s in SIGMAS] + ["log σ=0.7"]
    assert labels[7 + 6 * 3 : 7 + 6 * 3 + 2] == [
        "structure_tensor_eigenvalues σ=0.7 [0]",
        "structure_tensor_eigenvalues σ=0.7 [1]",
    ]
    assert labels[-1] == "hessian_eigenvalues σ=10 [1]"
    subset, names = ref.reference_features(
        image, [1.6, [1.0, 2.5]], ["hessian_eigenvalues", "dog"], 2
    )
    assert names == [
        "hessian_eigenvalues σ=1.6 [0]",
        "hessian_eigenvalues σ=1.6 [1]",
        "hessian_eigenvalues σ=1×2.5 [0]",
        "hessian_eigenvalues σ=1×2.5 [1]",
        "dog σ=1.6",
        "dog σ=1×2.5",
    ]
    np.testing.assert_array_equal(subset[0], values[labels.index("hessian_eigenvalues σ=1.6 [0]")])
    assert (subset[0] >= subset[1]).all()


def test_reference_3d_of_a_z_constant_volume_is_the_2d_reference():
    """A volume constant along z: z derivatives vanish, so the 3-D features are the 2-D ones (the
    eigenvalues gain a 0, in descending place); checks the per-axis sigmas and radii."""
    image = _camera()[::8, ::8].astype(np.float64)
    volume = np.repeat(image[None], 9, axis=0)
    features = ref.FEATURES
    flat, _ = ref.reference_features(image, [1.6], features, 2)
    deep, labels = ref.reference_features(volume, [[0.8, 1.6, 1.6]], features, 3)
    assert len(labels) == 4 + 3 + 3
    scale = np.abs(flat).max()
    for index in range(4):  # gaussian, log, gradient_magnitude, dog
        np.testing.assert_allclose(
            deep[index], np.broadcast_to(flat[index], volume.shape), atol=1e-12 * scale
        )
    for start_2d, start_3d in [(4, 4), (6, 7)]:  # structure tensor, hessian
        pair = flat[start_2d : start_2d + 2]
        with_zero = np.sort(np.concatenate([pair, np.zeros((1, *image.shape))]), axis=0)[::-1]
        np.testing.assert_allclose(
            deep[start_3d : start_3d + 3],
            np.broadcast_to(with_zero[:, None], (3, *volume.shape)),
            atol=1e-9 * scale,
        )
