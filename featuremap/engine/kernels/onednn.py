"""Optional direct convolution through PyTorch's CPU kernels (oneDNN), where torch is installed.

featuremap never requires torch: :func:`available` asks the import system without importing it,
and torch is imported on the first call that the cost model (:mod:`.conv`) sends here -- the
``"torch"`` method, chosen per call for strided, medium-to-large kernels with few output
channels (AlexNet's 11x11 stride-4 first layer), where oneDNN's JIT direct convolution beats an
im2col GEMM: there the GEMM is skinny (``J`` = 16-64 rows) and OpenBLAS runs it far below peak,
while the patch copy costs another 25-30 %.

Threads: like :mod:`.gemm`, the output is cut into :data:`TILES_PER_THREAD` tiles per BLAS
thread (groups of images, or bands of output rows with their input rows) that Python threads
take one at a time, each calling torch with one intra-op thread (torch's thread count is a per-thread OpenMP setting, so the caller's is
left alone). On the 2-core development machine (AMD EPYC Zen 5, AVX-512, torch 2.13) torch's
own 2-thread run of the 11x11/4 layer on 1024^2 took 28 ms and 26 CPU-ms against 7.7 ms on one
thread: its parallel split of this shape does about 3x the work.

Non-finite inputs: a direct convolution propagates NaN/Inf exactly to the windows that hold
them, but which algorithm torch runs is its choice, so an output that is not all finite (a
single pass over the output: a sum) is recomputed by the exact GEMM path by the caller
(:func:`._namespace.finite_sum`).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import warnings
from typing import Any

import numpy

from featuremap._typing import Array
from featuremap.engine.kernels._threads import blas_threads, run_tiles

__all__ = ["IMPORT_SECONDS", "TILES_PER_THREAD", "available", "torch_conv", "worth_importing"]

#: Tiles per thread: more than one, so that a thread slowed by other processes hands its
#: share to the other, few enough that each torch call stays large (every tile re-reads the
#: input rows it shares with its neighbours and pays torch's per-call reorders).
TILES_PER_THREAD = 2


#: What importing torch costs a process (CPU build 2.13 on this machine kind: 1.4-1.7 CPU-s). Until
#: a process has torch, "auto" takes it only once the time it would have saved there adds up to
#: this: a small job never pays the import, a long one pays it once (at most twice the better
#: of the two choices, the ski-rental bound).
IMPORT_SECONDS = 1.5
_forgone_seconds = 0.0  # saved time given up so far in this process (races only delay the switch)


def worth_importing(saving_seconds: float) -> bool:
    """Whether a call that torch would make ``saving_seconds`` faster should use it: always once
    torch is imported in this process, otherwise when the savings given up reach the import's
    cost (:data:`IMPORT_SECONDS`)."""
    global _forgone_seconds
    if "torch" in sys.modules:
        return True
    _forgone_seconds += saving_seconds
    return _forgone_seconds >= IMPORT_SECONDS


@functools.cache
def available() -> bool:
    """Whether torch can be imported (checked once, without importing it)."""
    return importlib.util.find_spec("torch") is not None


def _tensor(torch: Any, array: numpy.ndarray) -> Any:
    """``array`` as a tensor sharing its memory; read-only inputs too (torch only reads them)."""
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():  # "not writable": torch never writes to an input
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def _tiles(n_images: int, rows: int, parts: int) -> list[tuple[slice, slice]]:
    """``(images, output rows)`` of about ``parts`` equal tiles: groups of whole images, or
    bands of output rows of each image where there are fewer images than parts."""
    if n_images >= parts or rows < 2:
        step = -(-n_images // parts)
        return [
            (slice(n0, min(n0 + step, n_images)), slice(0, rows)) for n0 in range(0, n_images, step)
        ]
    bands = -(-parts // n_images)
    step = -(-rows // bands)
    return [
        (slice(n, n + 1), slice(r0, min(r0 + step, rows)))
        for n in range(n_images)
        for r0 in range(0, rows, step)
    ]


def _band_rows(
    band: slice, stride: int, span: int, pad: int, height: int
) -> tuple[slice, int, int]:
    """What one torch call computes output rows ``band`` from, with ``pad`` zero rows on either
    side of the ``height`` input rows: ``(input rows, torch's row padding, output rows to skip)``.

    A band inside the image needs no padding; one that reaches past an edge gets torch's
    (symmetric) padding. Where that padding stands in front of real rows (a band reaching past
    the bottom edge only), the band starts ``skip`` output rows early and those rows, which
    see the zeros in place of real rows, are dropped.
    """
    first = band.start * stride - pad  # the band's first input row, unpadded coordinates
    end = (band.stop - 1) * stride + span - pad
    if first >= 0 and end <= height:
        return slice(first, end), 0, 0
    skip = min(band.start, -(-pad // stride))
    return slice((band.start - skip) * stride, min(end, height)), pad, skip


def torch_conv(
    x: Array,
    weight: Array,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    out_shape: tuple[int, int, int, int],
    padding: tuple[int, int] = (0, 0),
) -> Array:
    """Cross-correlation of ``x (N, C, H, W)`` with ``padding`` zeros on both sides of each
    axis, as torch's ``padding``: ``(N, J, H_out, W_out)`` = ``out_shape``, by
    ``torch.nn.functional.conv2d`` on tiles (module docstring); float32 NumPy arrays, already
    validated. With one tile the result is torch's own output array (no copy)."""
    import torch

    span_y = dilation[0] * (weight.shape[-2] - 1) + 1
    kernel = _tensor(torch, numpy.ascontiguousarray(weight))

    def conv(images: slice, band: slice) -> Any:
        rows, pad_y, skip = _band_rows(band, stride[0], span_y, padding[0], x.shape[-2])
        if rows.start >= rows.stop:  # the band's windows hold padding only
            n_images = len(range(*images.indices(out_shape[0])))
            shape = (n_images, out_shape[1], band.stop - band.start, out_shape[3])
            return numpy.zeros(shape, dtype=numpy.float32)
        previous = torch.get_num_threads()
        torch.set_num_threads(1)  # this thread only (an OpenMP per-thread setting)
        try:
            with torch.no_grad():
                result = torch.nn.functional.conv2d(
                    _tensor(torch, numpy.asarray(x[images, :, rows])),
                    kernel,
                    stride=stride,
                    dilation=dilation,
                    groups=groups,
                    padding=(pad_y, padding[1]),
                ).numpy()
        finally:
            torch.set_num_threads(previous)
        return result[:, :, skip : skip + band.stop - band.start]

    threads = blas_threads()
    tiles = _tiles(out_shape[0], out_shape[2], threads * TILES_PER_THREAD if threads > 1 else 1)
    if len(tiles) == 1:
        return numpy.ascontiguousarray(conv(*tiles[0]))
    out = numpy.empty(out_shape, dtype=numpy.float32)

    def tile(item: tuple[slice, slice]) -> None:
        images, band = item
        numpy.copyto(out[images, :, band], conv(images, band))

    run_tiles(tile, tiles)
    return out
