"""The public array functions (``featuremap.arrays.functional``): ``conv2d`` and the pools on NumPy,
Dask or xarray arrays (the numerics are the kernels' and layers' tests; a DataArray goes to
``featuremap.apply``, ``test_xarray.py``)."""

from __future__ import annotations

import numpy as np
import xarray as xr

import featuremap


def test_conv2d_on_a_dataarray_dispatches_to_apply_and_stays_lazy(scene):
    import dask.array as da

    weight = np.ones((2, 3, 3, 3), np.float32)
    result = featuremap.conv2d(scene.chunk({"time": 1}), weight, padding=1)
    assert isinstance(result, xr.DataArray)
    assert isinstance(result.data, da.Array)
    assert result.dims == ("time", "feature", "y", "x")
    np.testing.assert_allclose(result["y"].values, scene["lat"].values)
