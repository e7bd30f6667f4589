"""Optional direct convolution through PyTorch's CPU kernels (oneDNN), where torch is installed.

featuremap never requires torch: :func:`available` asks the import system without importing it,
and torch is imported on the first call that the cost model (:mod:`.conv`) sends here -- the
``"torch"`` method, chosen per call for strided, medium-to-large kernels with few output
channels (AlexNet's 11x11 stride-4 first layer), where oneDNN's JIT direct convolution beats an
im2col GEMM: there the GEMM is skinny (``J`` = 16-64 rows) and OpenBLAS runs it far below peak,
while the patch copy costs another 25-30 %; and for stride-1 layers of many input channels,
where on AVX-512 cores oneDNN runs faster than OpenBLAS's own SGEMM peak.

Threads: one torch call with the task's BLAS threads (:func:`._threads.blas_threads`) as its
intra-op threads, set for the calling thread only (torch's thread count is a per-thread OpenMP
setting, so the caller's is restored). On the 2-core development machine (AMD EPYC Zen 5,
AVX-512, torch 2.13, 2026-12-05) torch's own 2-thread run of the 11x11/4 layer on 1024^2
(padding 5) took 3.8-4.2 ms and 7.6-8.3 CPU-ms against 7.1-7.4 ms on one thread, from the main
thread or another; cutting the output into row bands that Python threads passed to
single-threaded torch calls (as this module did before) took 5.8-11.7 ms and 10.3 CPU-ms there
(2.2-5.6 ms against torch's 1.5-1.8 on 8 x 227^2; on 7x7/2 3 -> 64 at 512^2 the bands and one
call both ~10 ms): every band re-reads its neighbours' input rows and pays torch's per-call
reorders.

Non-finite inputs: a direct convolution propagates NaN/Inf exactly to the windows that hold
them, but which algorithm torch runs is its choice, so an output that is not all finite (a
single pass over the output: a sum) is recomputed by the exact GEMM path by the caller
(:func:`._namespace.finite_sum`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy

from featuremap._typing import Array
from featuremap.engine.kernels._optional import OptionalModule
from featuremap.engine.kernels._threads import blas_threads

__all__ = ["IMPORT_SECONDS", "available", "torch_conv", "usable", "worth_importing"]

#: What importing torch costs a process (CPU build 2.13 on this machine kind: 1.4-1.7 CPU-s); until
#: then "auto" takes torch only once the time it would have saved adds up to this
#: (:class:`._optional.OptionalModule`).
IMPORT_SECONDS = 1.5
_TORCH = OptionalModule("torch", IMPORT_SECONDS)


def worth_importing(saving_seconds: float) -> bool:
    """Whether a call that torch would make ``saving_seconds`` faster should use it: always once
    torch is imported in this process, otherwise when the savings given up reach the import's
    cost (:data:`IMPORT_SECONDS`)."""
    return _TORCH.worth_importing(saving_seconds)


def available() -> bool:
    """Whether torch can be imported (checked once, without importing it)."""
    return _TORCH.available()


def usable() -> bool:
    """Whether a forced ``"torch"`` call can run: torch is installed (imported by the call)."""
    return available()


def _tensor(torch: Any, array: numpy.ndarray) -> Any:
    """``array`` as a tensor sharing its memory; read-only inputs too (torch only reads them)."""
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():  # "not writable": torch never writes to an input
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def torch_conv(
    x: Array,
    weight: Array,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    padding: tuple[int, int] = (0, 0),
) -> Array:
    """Cross-correlation of ``x (N, C, H, W)`` with ``padding`` zeros on both sides of each
    axis (torch's ``padding``), by one ``torch.nn.functional.conv2d`` call on the task's
    threads (module docstring); float32 NumPy arrays, already validated. The result is torch's
    own output array (no copy)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(blas_threads())  # this thread only (an OpenMP per-thread setting)
    try:
        with torch.no_grad():
            out = torch.nn.functional.conv2d(
                _tensor(torch, numpy.asarray(x)),
                _tensor(torch, numpy.ascontiguousarray(weight)),
                stride=stride,
                dilation=dilation,
                groups=groups,
                padding=padding,
            )
    finally:
        torch.set_num_threads(previous)
    return out.numpy()
