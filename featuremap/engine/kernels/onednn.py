"""Optional direct convolution through PyTorch's CPU kernels (oneDNN), where torch is installed.

featuremap never requires torch: :func:`available` asks the import system without importing it,
and torch is imported on the first call that the cost model (:mod:`.conv`) sends here -- the
``"torch"`` method, chosen per call for strided, medium-to-large kernels with few output
channels (AlexNet's 11x11 stride-4 first layer), where oneDNN's JIT direct convolution beats an
im2col GEMM: there the GEMM is skinny (``J`` = 16-64 rows) and OpenBLAS runs it far below peak,
while the patch copy costs another 25-30 %.

Threads: like :mod:`.gemm`, the output is cut into tiles (whole images, or bands of output
rows with their input rows) that Python threads take one at a time, each calling torch with
one intra-op thread (torch's thread count is a per-thread OpenMP setting, so the caller's is
left alone). On the 2-core development machine (AMD EPYC Zen 5, AVX-512, torch 2.13) torch's
own 2-thread run of the 11x11/4 layer on 1024^2 took 28 ms and 26 CPU-ms against 7.7 ms on one
thread: its parallel split of this shape does about 3x the work.

Non-finite inputs: a direct convolution propagates NaN/Inf exactly to the windows that hold
them, but which algorithm torch runs is its choice, so an output that is not all finite (a
single pass over the output: a sum) is recomputed by the exact GEMM path by the caller
(:func:`finite_sum`).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy

from featuremap._typing import Array
from featuremap.engine.kernels._threads import run_tiles

__all__ = ["TILE_BYTES", "available", "finite_sum", "torch_conv"]

#: Output bytes per tile: small enough that torch's blocked-layout reorders and our copy of the
#: tile into the output stay in L2/L3, large enough that the per-call overhead (~30 us) is noise.
TILE_BYTES = 1 << 20


@functools.cache
def available() -> bool:
    """Whether torch can be imported (checked once, without importing it)."""
    return importlib.util.find_spec("torch") is not None


def finite_sum(out: Array) -> bool:
    """Whether every value of ``out`` is finite, by one sum (cheaper than ``isfinite``, which
    writes a mask; a sum that overflows only sends the call to the exact GEMM path)."""
    with numpy.errstate(invalid="ignore", over="ignore"):  # NaN/Inf are the question here
        total = numpy.add.reduce(numpy.asarray(out), axis=None)
    return math.isfinite(float(total))


def _tensor(torch: Any, array: numpy.ndarray) -> Any:
    """``array`` as a tensor sharing its memory; read-only inputs too (torch only reads them)."""
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():  # "not writable": torch never writes to an input
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def _tiles(n_images: int, rows: int, image_bytes: int) -> Iterator[tuple[slice, slice]]:
    """``(images, output rows)`` of about :data:`TILE_BYTES` of output each."""
    if image_bytes <= TILE_BYTES:
        step = max(1, TILE_BYTES // image_bytes)
        for n0 in range(0, n_images, step):
            yield slice(n0, min(n0 + step, n_images)), slice(0, rows)
        return
    bands = -(-image_bytes // TILE_BYTES)
    step = -(-rows // bands)
    for n in range(n_images):
        for r0 in range(0, rows, step):
            yield slice(n, n + 1), slice(r0, min(r0 + step, rows))


def torch_conv(
    x: Array,
    weight: Array,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    out: Array,
) -> Array:
    """Valid cross-correlation of ``x (N, C, H, W)`` into ``out (N, J, H_out, W_out)`` by
    ``torch.nn.functional.conv2d`` on tiles; float32 NumPy arrays, already validated."""
    import torch

    rows = out.shape[-2]
    span_y = dilation[0] * (weight.shape[-2] - 1) + 1
    kernel = _tensor(torch, numpy.ascontiguousarray(weight))

    def tile(item: tuple[slice, slice]) -> None:
        images, band = item
        in_rows = slice(band.start * stride[0], (band.stop - 1) * stride[0] + span_y)
        previous = torch.get_num_threads()
        torch.set_num_threads(1)  # this thread only (an OpenMP per-thread setting)
        try:
            with torch.no_grad():
                result = torch.nn.functional.conv2d(
                    _tensor(torch, numpy.asarray(x[images, :, in_rows])),
                    kernel,
                    stride=stride,
                    dilation=dilation,
                    groups=groups,
                )
        finally:
            torch.set_num_threads(previous)
        numpy.copyto(out[images, :, band], result.numpy())

    image_bytes = out[0].nbytes if out.shape[0] else 0
    run_tiles(tile, _tiles(out.shape[0], rows, max(image_bytes, 1)))
    return out
