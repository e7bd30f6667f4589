"""``featuremap.pixel_features`` (DESIGN section 8) against fastfilters2 and the float64 reference
(``support.pixel_reference``), in 2-D and 3-D, in memory and on Dask chunks that divide nothing."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import skimage.data
from support.pixel_reference import reference_features

import featuremap
from featuremap.errors import InputError

fastfilters2 = pytest.importorskip("fastfilters2")

#: fastfilters2.compute_filters's 7 channels at one sigma, as featuremap's features.
FASTFILTERS2_ORDER = [
    ("gaussian", 0),
    ("gradient_magnitude", 0),
    ("log", 0),
    ("hessian_eigenvalues", 0),
    ("hessian_eigenvalues", 1),
    ("structure_tensor_eigenvalues", 0),
    ("structure_tensor_eigenvalues", 1),
]


@pytest.fixture(scope="module")
def camera():
    return skimage.data.camera().astype(np.float32)


@pytest.fixture(scope="module")
def camera_features(camera):
    """The full default set on camera: values and labels."""
    return featuremap.pixel_features(camera), featuremap.pixel_feature_labels()


def _close(ours, expected, tolerance=1e-5):
    """Within ``tolerance`` of the channel's largest absolute value, borders included."""
    scale = max(float(np.abs(expected).max()), 1e-30)
    error = float(np.abs(np.asarray(ours, np.float64) - expected).max())
    assert error <= tolerance * scale, (error, scale)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 1.6, 3.5, 5.0, 10.0])
def test_every_channel_equals_fastfilters2(camera, camera_features, sigma):
    values, labels = camera_features
    expected = fastfilters2.compute_filters(camera, sigma)
    for (name, component), channel in zip(FASTFILTERS2_ORDER, expected, strict=True):
        several = name.endswith("eigenvalues")
        label = f"{name} σ={sigma:g}" + (f" [{component}]" if several else "")
        if name == "structure_tensor_eigenvalues" and component == 1 and sigma < 1:
            continue  # nearly rank 1: fastfilters2's float32 noise exceeds the value itself
        _close(values[labels.index(label)], channel)


def test_sigma_0_3_is_for_the_gaussian_only(camera, camera_features):
    values, labels = camera_features
    assert [label for label in labels if "σ=0.3" in label] == ["gaussian σ=0.3"]
    _close(values[labels.index("gaussian σ=0.3")], fastfilters2.compute_filters(camera, 0.3)[0])
    assert len(labels) == 1 + 6 * (1 + 1 + 1 + 1 + 2 + 2)


def test_the_default_set_and_its_labels_follow_the_reference(camera, camera_features):
    """Channel order and labels as DESIGN section 8 (DoG included, which fastfilters2 lacks)."""
    values, labels = camera_features
    expected, expected_labels = reference_features(camera)
    assert labels == expected_labels
    for ours, reference in zip(values, expected, strict=True):
        _close(ours, reference)


def test_scipy_kernels_and_per_axis_sigma_in_2d(camera):
    image = camera[:160, :150]
    sigmas = [1.0, [0.8, 2.0]]
    ours = featuremap.pixel_features(image, sigmas, kernels="scipy")
    expected, labels = reference_features(image, sigmas, kernels="scipy")
    assert featuremap.pixel_feature_labels(sigmas, kernels="scipy") == labels
    for channel, reference in zip(ours, expected, strict=True):
        _close(channel, reference)


@pytest.mark.parametrize("kernels", ["fastfilters", "scipy"])
def test_3d_with_anisotropic_sigma_equals_the_reference(kernels):
    volume = np.random.default_rng(3).random((14, 30, 27), dtype=np.float32)
    sigmas = [[0.5, 1.0, 1.0], 1.6]
    ours = featuremap.pixel_features(volume, sigmas, ndim=3, kernels=kernels)
    expected, labels = reference_features(volume, sigmas, ndim=3, kernels=kernels)
    assert ours.shape == expected.shape == (len(labels), 14, 30, 27)
    assert featuremap.pixel_feature_labels(sigmas, ndim=3, kernels=kernels) == labels
    for channel, reference in zip(ours, expected, strict=True):
        _close(channel, reference)


@pytest.mark.parametrize(
    ("shape", "chunks", "ndim"),
    [((2, 300, 290), (1, 37, 53), 2), ((22, 40, 38), (9, 13, 11), 3)],
)
def test_dask_chunks_equal_the_in_memory_result(shape, chunks, ndim):
    """Lazy and chunk-exact: every stage folds the true border, never a chunk's -- equal to
    1e-6 of the input's scale (blocks may take another summation order: a DoG of two Gaussians
    near 0.5 differs by a few float32 ulps of 0.5)."""
    x = np.random.default_rng(5).random(shape, dtype=np.float32)
    sigmas, features = [0.7, 2.0], ["gradient_magnitude", "dog", "structure_tensor_eigenvalues"]
    eager = featuremap.pixel_features(x, sigmas, features, ndim=ndim)
    lazy = featuremap.pixel_features(da.from_array(x, chunks=chunks), sigmas, features, ndim=ndim)
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), eager, rtol=1e-6, atol=1e-6 * np.abs(x).max())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features": ["sobel"]}, r"pixel_features.features: must be a list of distinct names"),
        ({"sigmas": [0.0]}, r"pixel_features.sigmas: sigmas\[0\] must be numbers > 0"),
        ({"sigmas": [[1.0, 2.0, 3.0]]}, r"one per axis \(2\)"),
        ({"ndim": 4}, r"pixel_features.ndim"),
        ({"kernels": "vigra"}, r"pixel_features.kernels"),
    ],
)
def test_bad_parameters_are_one_line(kwargs, message):
    with pytest.raises(InputError, match=message):
        featuremap.pixel_features(np.zeros((20, 20), np.float32), **kwargs)


def test_a_dataarray_and_a_tensor_give_what_numpy_gives():
    """A DataArray's axes are read by name (here t stays a batch axis) and its coordinates
    carried; a torch tensor comes back as a tensor."""
    import torch
    import xarray as xr

    data = np.random.default_rng(4).random((2, 40, 50), dtype=np.float32)
    expected = featuremap.pixel_features(data, [1.0], ["gaussian", "hessian_eigenvalues"])
    scene = xr.DataArray(data, dims=("t", "y", "x"), coords={"y": 0.5 * np.arange(40)})
    result = featuremap.pixel_features(scene, [1.0], ["gaussian", "hessian_eigenvalues"])
    assert result.dims == ("t", "c", "y", "x")
    assert list(result["c"].values) == featuremap.pixel_feature_labels(
        [1.0], ["gaussian", "hessian_eigenvalues"]
    )
    np.testing.assert_allclose(result["y"].values, 0.5 * np.arange(40))
    np.testing.assert_array_equal(result.values, expected)
    tensor = featuremap.pixel_features(torch.from_numpy(data), [1.0], ["gaussian"])
    assert isinstance(tensor, torch.Tensor)
    np.testing.assert_array_equal(
        tensor.numpy(), featuremap.pixel_features(data, [1.0], ["gaussian"])
    )
