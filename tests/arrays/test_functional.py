"""The public array functions (``featuremap.arrays.functional``): ``conv2d`` and the pools on NumPy,
Dask or xarray arrays (the numerics are the kernels' and layers' tests; a DataArray goes to
``featuremap.apply``, ``test_xarray.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import featuremap


def test_conv2d_on_a_dataarray_dispatches_to_apply_and_stays_lazy(scene):
    import dask.array as da

    weight = np.ones((2, 3, 3, 3), np.float32)
    result = featuremap.conv2d(scene.chunk({"time": 1}), weight, padding=1)
    assert isinstance(result, xr.DataArray)
    assert isinstance(result.data, da.Array)
    assert result.dims == ("t", "c", "y", "x")
    np.testing.assert_allclose(result["y"].values, scene["lat"].values)


# --- torch's own calls: positional arguments, tensors in and out --------------------------------


def test_torch_calls_work_as_written():
    """A drop-in user passes arguments the way torch takes them, tensors included."""
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 17, 14, generator=generator, dtype=torch.float32)
    weight = torch.randn(4, 3, 3, 2, generator=generator, dtype=torch.float32, requires_grad=True)
    bias = torch.randn(4, generator=generator, dtype=torch.float32)
    ours = featuremap.conv2d(x, weight, bias, 2, 1, 1, 1)
    expected = torch.nn.functional.conv2d(x, weight, bias, 2, 1, 1, 1).detach()
    assert isinstance(ours, torch.Tensor)
    assert ours.device == x.device
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        featuremap.max_pool2d(x, 3, 2, 1), torch.nn.functional.max_pool2d(x, 3, 2, 1)
    )
    torch.testing.assert_close(
        featuremap.avg_pool2d(x, 2, 1, 1), torch.nn.functional.avg_pool2d(x, 2, 1, 1)
    )


def test_positional_arguments_on_numpy_match_keywords():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 9, 9)).astype(np.float32)
    weight = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    positional = featuremap.conv2d(x, weight, None, (2, 1), 1, 2, 2)
    keywords = featuremap.conv2d(x, weight, stride=(2, 1), padding=1, dilation=2, groups=2)
    np.testing.assert_array_equal(positional, keywords)


# --- a batch of no images: an empty result of the right shape, as torch (issue 23) -------------

#: PyTorch-style configurations: (C, J, kernel, stride, padding, dilation, groups, spatial)
EMPTY_CONV_CASES = [
    (1, 4, (3, 3), 1, 0, 1, 1, (20, 21)),
    (4, 6, (5, 3), (2, 1), 1, (2, 1), 2, (33, 28)),
    (3, 3, (7, 7), 3, 3, 1, 3, (17, 18)),  # depthwise
    (16, 32, (1, 1), 1, 0, 1, 1, (12, 11)),  # 1x1
    (2, 5, (2, 2), (5, 4), 0, 1, 1, (23, 24)),  # stride larger than the kernel
    (6, 4, (3, 4), (2, 3), 0, (3, 2), 2, (30, 31)),  # dilation, even kernel
    (2, 4, (3, 3), 1, "same", 2, 1, (9, 10)),
    (2, 4, (3, 3), 1, "valid", 1, 2, (9, 10)),
    (2, 2, (3, 3, 3), 1, 1, 1, 1, (6, 7, 8)),  # conv3d
    (4, 8, (3, 1, 2), (2, 1, 1), (1, 0, 1), (1, 1, 2), 4, (7, 6, 9)),  # conv3d, depthwise
]


def _batches(channels: int, spatial: tuple[int, ...]):
    import dask.array as da

    for batch in ((0,), (2, 0)):
        x = np.zeros((*batch, channels, *spatial), np.float32)
        yield x
        yield da.from_array(x, chunks=(1,) * len(batch) + x.shape[len(batch) :])


@pytest.mark.parametrize("case", EMPTY_CONV_CASES)
def test_conv_on_an_empty_batch_is_empty_like_torch(case):
    torch = pytest.importorskip("torch")
    channels, filters, kernel, stride, padding, dilation, groups, spatial = case
    weight = np.ones((filters, channels // groups, *kernel), np.float32)
    ndim = len(kernel)
    ours = featuremap.conv2d if ndim == 2 else featuremap.conv3d
    theirs = torch.nn.functional.conv2d if ndim == 2 else torch.nn.functional.conv3d
    for x in _batches(channels, spatial):
        batch = x.shape[: -ndim - 1]
        images = torch.zeros((int(np.prod(batch)), channels, *spatial))
        expected = theirs(images, torch.from_numpy(weight), None, stride, padding, dilation, groups)
        result = ours(x, weight, None, stride, padding, dilation, groups)
        assert type(result) is type(x)
        assert result.shape == (*batch, *expected.shape[1:])
        assert np.asarray(result).shape == result.shape
        assert result.dtype == np.float32


#: (kind, kernel, stride, padding, ceil_mode, spatial)
EMPTY_POOL_CASES = [
    ("max", 3, 2, 1, False, (10, 10)),
    ("max", (2, 3), None, 0, True, (9, 11)),
    ("avg", 3, 1, 1, False, (8, 7)),
    ("avg", (2, 2), 2, 0, True, (9, 9)),
    ("max", (2, 2, 2), 2, 0, False, (6, 7, 8)),
    ("avg", 3, 2, 1, True, (5, 6, 7)),
]


@pytest.mark.parametrize("case", EMPTY_POOL_CASES)
def test_pools_on_an_empty_batch_are_empty_like_torch(case):
    torch = pytest.importorskip("torch")
    kind, kernel, stride, padding, ceil_mode, spatial = case
    ndim = len(spatial)
    ours = getattr(featuremap, f"{kind}_pool{ndim}d")
    theirs = getattr(torch.nn.functional, f"{kind}_pool{ndim}d")
    for x in _batches(3, spatial):
        batch = x.shape[: -ndim - 1]
        images = torch.zeros((int(np.prod(batch)), 3, *spatial))
        expected = theirs(images, kernel, stride, padding, ceil_mode=ceil_mode)
        result = ours(x, kernel, stride, padding, ceil_mode=ceil_mode)
        assert type(result) is type(x)
        assert result.shape == (*batch, *expected.shape[1:])
        assert np.asarray(result).shape == result.shape


def test_float64_values_beyond_float32_are_refused_not_made_inf():
    """Finite in, finite out -- or said (issue 23 D3): 1e300 would become inf in float32."""
    x = np.zeros((1, 1, 8, 8))
    x[0, 0, 3, 3] = 1e300
    with pytest.raises(featuremap.InputError, match="beyond float32's range"):
        featuremap.conv2d(x, np.ones((1, 1, 3, 3)))
    np.testing.assert_array_equal(
        featuremap.conv2d(np.zeros((1, 1, 8, 8)), np.ones((1, 1, 3, 3))), 0
    )
