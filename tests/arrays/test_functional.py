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
