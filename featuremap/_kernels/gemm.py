"""Tiled im2col + BLAS GEMM convolution with bounded scratch memory.

The patch matrix ``(groups, C/groups * kh * kw, pixels)`` is never built for a whole image:
tiles of whole images (small inputs), bands of whole output rows, or pieces of one output row
(huge ``C * kh * kw``) are copied into a scratch buffer of about :data:`SCRATCH_BYTES` and
multiplied straight into the matching slice of the output (``matmul(..., out=view)``), so the
patches stay in L2/L3 cache between the copy and the GEMM. Tiles run on parallel threads with
single-threaded BLAS (:mod:`._threads`), each thread with its own scratch. Stride and dilation
are applied while copying (the window view is decimated), groups are a stacked matmul.

Orientation: the weights are the left operand, ``(J/groups, K) @ (K, pixels)``, so the GEMM
writes the ``(J, y, x)`` output layout directly. The transposed orientation
``(pixels, K) @ (K, J)`` (patches with the short ``kw`` axis innermost, result written through a
transposed view) was slower in every case measured on the 2-core development machine:
C=1 J=16 k=7 2048^2 0.065 s vs 0.179 s, C=16 J=32 k=3 1024^2 0.066 s vs 0.237 s,
C=64 J=64 k=3 512^2 1.04 s vs 5.15 s (busy machine, one run).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from featuremap._kernels._namespace import (
    array_namespace,
    reshape_view,
    sliding_windows,
)
from featuremap._kernels._threads import run_tiles
from featuremap._typing import Array

__all__ = ["SCRATCH_BYTES", "gemm_conv"]

#: Patch-matrix scratch per tile: 8 rows of a 2048-wide image with 49 taps is 3.2 MB; measured
#: best between 2 and 8 MB (1 row per tile is ~25 % slower, whole-image patches ~30 % slower).
SCRATCH_BYTES = 4 << 20


def _tiles(
    n_images: int, rows: int, cols: int, column_bytes: int
) -> Iterator[tuple[slice, slice, slice]]:
    """Yield ``(images, rows, cols)`` slices covering the output with about SCRATCH_BYTES each.

    A tile spans several images only with whole images, several rows only with whole rows,
    so that the output slice flattens to ``(..., pixels)`` as a view.
    """
    image_bytes = column_bytes * rows * cols
    row_bytes = column_bytes * cols
    if image_bytes <= SCRATCH_BYTES:
        step = SCRATCH_BYTES // image_bytes
        for n0 in range(0, n_images, step):
            yield slice(n0, min(n0 + step, n_images)), slice(0, rows), slice(0, cols)
    elif row_bytes <= SCRATCH_BYTES:
        step = SCRATCH_BYTES // row_bytes
        for n in range(n_images):
            for r0 in range(0, rows, step):
                yield slice(n, n + 1), slice(r0, min(r0 + step, rows)), slice(0, cols)
    else:
        step = max(1, SCRATCH_BYTES // column_bytes)
        for n in range(n_images):
            for r in range(rows):
                for c0 in range(0, cols, step):
                    yield slice(n, n + 1), slice(r, r + 1), slice(c0, min(c0 + step, cols))


def _quiet_nan(xp: ModuleType) -> contextlib.AbstractContextManager[Any]:
    """NaN inputs are legitimate here (they propagate like in PyTorch): no NumPy warning."""
    return xp.errstate(invalid="ignore") if xp.__name__ == "numpy" else contextlib.nullcontext()


def gemm_conv(
    x: Array,
    weight: Array,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    out: Array,
) -> Array:
    """Valid cross-correlation of ``x (N, C, H, W)`` with ``weight (J, C/groups, kh, kw)``.

    Writes ``out (N, J, H_out, W_out)`` (C-contiguous) and returns it. Inputs are float32 and
    already validated; NaN/Inf propagate exactly to the outputs whose window holds them.
    """
    xp = array_namespace(x)
    n_images, _channels = x.shape[:2]
    n_filters, group_channels, kh, kw = weight.shape
    rows, cols = out.shape[-2:]
    (sy, sx), (dy, dx) = stride, dilation
    taps = group_channels * kh * kw
    span = (dy * (kh - 1) + 1, dx * (kw - 1) + 1)
    # (N, C, H_out, W_out, kh, kw): every window of every output pixel, as a view.
    windows = sliding_windows(x, span)[:, :, ::sy, ::sx, ::dy, ::dx]
    weight_matrix = xp.ascontiguousarray(weight.reshape(groups, n_filters // groups, taps))
    out_groups = reshape_view(out, (n_images, groups, n_filters // groups, rows, cols))
    column_bytes = groups * taps * x.itemsize
    scratch_items = (
        min(n_images * rows * cols, max(SCRATCH_BYTES // column_bytes, 1)) * groups * taps
    )
    per_thread = threading.local()

    def tile(images: slice, band: slice, piece: slice) -> None:
        scratch = getattr(per_thread, "scratch", None)
        if scratch is None:
            scratch = per_thread.scratch = xp.empty(scratch_items, dtype=x.dtype)
        source = windows[images, :, band, piece]
        n, _, h, w = source.shape[:4]
        patches = scratch[: n * groups * taps * h * w]
        # (n, G, Cg, kh, kw, h, w) <- (n, G, Cg, h, w, kh, kw): taps outer, pixels inner.
        xp.copyto(
            patches.reshape(n, groups, group_channels, kh, kw, h, w),
            source.reshape(n, groups, group_channels, h, w, kh, kw).transpose(0, 1, 2, 5, 6, 3, 4),
        )
        target = reshape_view(
            out_groups[images, :, :, band, piece], (n, groups, n_filters // groups, h * w)
        )
        with _quiet_nan(xp):
            xp.matmul(weight_matrix, patches.reshape(n, groups, taps, h * w), out=target)

    run_tiles(
        lambda item: tile(*item),
        _tiles(n_images, rows, cols, column_bytes),
        parallel=xp.__name__ == "numpy",
    )
    return out
