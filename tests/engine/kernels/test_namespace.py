"""The array namespace (``featuremap.engine.kernels._namespace``): NumPy for NumPy arrays."""

from __future__ import annotations

import numpy as np

from featuremap.engine.kernels import array_namespace


def test_array_namespace_is_numpy_for_numpy_arrays():
    assert array_namespace(np.zeros(3)) is np
