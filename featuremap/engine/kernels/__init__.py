"""Per-block compute on in-memory NumPy or CuPy arrays: padding, conv, pooling, activations,
the eigenvalues of symmetric tensors.

No Dask and no Zarr here: callers hand over one (already padded) block and get its result.
Every function takes its array module from its input (:func:`array_namespace`), so the same
code runs on CuPy arrays; CuPy is never imported unless such an array arrives.

``conv2d_valid`` picks among its paths (:func:`choose_method`): tiled im2col + GEMM, overlap-save
FFT for large kernels, separable 1-D passes for rank-1 banks, polyphase strided GEMM, (numba
installed) a compiled direct loop for depthwise layers and (torch installed) oneDNN's direct
convolution; see :mod:`.cost` for the time model and the measured
crossover. On CuPy arrays, kernels up to 7x7 run the CUDA direct kernel
(:mod:`.cuda`) instead.
"""

from featuremap.engine.kernels._namespace import array_namespace
from featuremap.engine.kernels._threads import task_threads
from featuremap.engine.kernels.activations import activate
from featuremap.engine.kernels.conv import choose_method, conv2d_valid
from featuremap.engine.kernels.conv3d import conv3d_valid
from featuremap.engine.kernels.eigenvalues import (
    derivative_orders,
    symmetric_eigenvalues,
    tensor_components,
    tensor_size,
)
from featuremap.engine.kernels.padding import check_fits, pad
from featuremap.engine.kernels.pool import avg_pool_valid, max_pool_valid

__all__ = [
    "activate",
    "array_namespace",
    "avg_pool_valid",
    "check_fits",
    "choose_method",
    "conv2d_valid",
    "conv3d_valid",
    "derivative_orders",
    "max_pool_valid",
    "pad",
    "symmetric_eigenvalues",
    "task_threads",
    "tensor_components",
    "tensor_size",
]
