"""Tiled im2col + BLAS GEMM convolution with bounded scratch memory.

The patch matrix ``(groups, C/groups * kh * kw, pixels)`` is never built for a whole image:
tiles of whole images (small inputs), bands of whole output rows, or pieces of one output row
(huge ``C * kh * kw``) are copied into a scratch buffer of about :data:`SCRATCH_BYTES` and
multiplied straight into the matching slice of the output (``matmul(..., out=view)``), so the
patches stay in L2/L3 cache between the copy and the GEMM. Tiles run on parallel threads with
single-threaded BLAS (:mod:`._threads`), each thread with its own scratch. Stride and dilation
are applied while copying (the window view is decimated), groups are a stacked matmul.

Column phases (strided convolutions, :func:`column_phases`): with a stride ``s_x > 1`` every
patch row is a gather of every ``s_x``-th input column, which NumPy copies element by element
(~3.3e9 elements/s on one core against ~12e9 for contiguous runs). Where the kernel is large
against the stride (:func:`use_phases`), each tile first copies its input band once into the
``s_x`` column phases ``x[..., q::s_x]`` (space-to-depth along ``x``); tap ``kx`` then reads the
contiguous columns ``ox + (kx d_x) // s_x`` of phase ``(kx d_x) % s_x``, and the ``kh kw`` times
larger patch copy runs over contiguous rows. The taps are reordered by phase (the weight matrix's
columns with them). Rows need no phases: an output row reads whole input rows whatever ``s_y``.
AlexNet's 11x11 stride-4 layer (3 -> 24 channels, 1024^2), one core: patch copy 7.4 ms -> 3.3 ms
(1.5 ms phases + 1.8 ms patches), next to 8 ms of GEMM.

A 1x1 stride-1 convolution needs no patches at all: the input band is already the
``(C/groups, pixels)`` matrix, which BLAS reads in place.

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

from featuremap._typing import Array
from featuremap.engine.kernels._namespace import (
    array_namespace,
    reshape_view,
    sliding_windows,
)
from featuremap.engine.kernels._threads import run_tiles

__all__ = [
    "SCRATCH_BYTES",
    "column_phases",
    "gemm_conv",
    "group_block",
    "patch_path",
    "phase_elements",
    "use_phases",
]

#: Patch-matrix scratch per tile: 8 rows of a 2048-wide image with 49 taps is 3.2 MB; measured
#: best between 2 and 8 MB (1 row per tile is ~25 % slower, whole-image patches ~30 % slower).
SCRATCH_BYTES = 4 << 20

#: Pixels per GEMM below which a tile takes fewer groups (:func:`group_block`), so that each
#: group's GEMM stays large. Depthwise on 64 channels, one core, all 64 groups per 4 MB tile
#: against blocks of 13 groups: 3x3 on 8 x 64^2 4.3 -> 3.6 ms, 5x5 on 256^2 16.8 -> 15.2 ms.
MIN_PIXELS = 8192


def column_phases(kw: int, sx: int, dx: int) -> list[tuple[int, int, int, list[int]]]:
    """``(q, first, step, taps)`` per column phase ``q`` that some tap reads.

    Tap ``kx`` reads input column ``ox s_x + kx d_x`` = column ``ox + (kx d_x) // s_x`` of the
    phase image ``x[..., q::s_x]`` with ``q = (kx d_x) % s_x``. The taps of one phase are
    ``kx0, kx0 + s_x/g, ...`` (``g = gcd(s_x, d_x)``), at phase columns ``first + m * step``
    with ``step = d_x / g``: a dilated window of the phase image.
    """
    classes: dict[int, list[int]] = {}
    for kx in range(kw):
        classes.setdefault(kx * dx % sx, []).append(kx)
    phases = []
    for q, taps in sorted(classes.items()):
        offsets = [kx * dx // sx for kx in taps]
        step = offsets[1] - offsets[0] if len(offsets) > 1 else 1
        phases.append((q, offsets[0], step, taps))
    return phases


def use_phases(weight_shape: tuple[int, ...], stride: tuple[int, int]) -> bool:
    """Whether :func:`gemm_conv` copies the column phases first (module docstring).

    Measured on one core (8 -> 8 channels, 1024^2; time without / with phases): the phase copy
    pays where the kernel covers at least twice the stride cell (3x3/2 11.1 / 8.1 ms, 4x4/2
    17.3 / 12.3 ms, 6x6/3 16.6 / 13.5 ms) and at column stride 2, whose gather is the slowest,
    down to one cell (2x2/2 8.5 / 7.0 ms), not below that (3x3/3 6.1 / 6.4 ms, 4x4/4
    7.5 / 8.2 ms, 5x5/4 7.2 / 7.4 ms, 2x2/3 3.4 / 4.8 ms). Kernels smaller than the stride cell
    (1x1/2 2.9 / 2.6 ms) keep the gather: their phase band would outgrow the patches.
    """
    kh, kw = weight_shape[-2:]
    sy, sx = stride
    cell, taps = sy * sx, kh * kw
    return sx > 1 and (taps >= 2 * cell or (sx == 2 and taps >= cell))


def phase_elements(out_shape: tuple[int, int], stride: tuple[int, int], span: int) -> int:
    """About the input elements per image and channel that the column phases copy for an output
    of ``out_shape``: the input rows it reads, plus the ``span - s_y`` rows of overlap between
    bands (counted once per 8 output rows, a typical band)."""
    (rows, cols), (sy, sx) = out_shape, stride
    bands = -(-rows // 8)
    return (rows * sy + bands * max(span - sy, 0)) * cols * sx


def group_block(groups: int, group_column_bytes: int) -> int:
    """Groups per tile: all of them, unless that leaves each group's GEMM fewer than
    :data:`MIN_PIXELS` pixels (many groups of few taps: depthwise)."""
    if groups * group_column_bytes * MIN_PIXELS <= SCRATCH_BYTES:
        return groups
    return _even(groups, SCRATCH_BYTES // (group_column_bytes * MIN_PIXELS))


def patch_path(weight_shape: tuple[int, ...], stride: tuple[int, int], groups: int) -> str:
    """How :func:`gemm_conv` builds its patches, for benchmarks and tests: ``"1x1"`` (none),
    ``"phases"`` (column phases first) or ``"im2col"``, with ``"/<n> groups"`` where a tile
    takes only ``n`` of the groups (:func:`group_block`)."""
    _, group_channels, kh, kw = weight_shape
    if kh == kw == 1 and stride == (1, 1):
        path = "1x1"
    else:
        path = "phases" if use_phases(weight_shape, stride) else "im2col"
    block = group_block(groups, group_channels * kh * kw * 4)
    return path if block == groups else f"{path}/{block} groups"


def _even(total: int, most: int) -> int:
    """The step that splits ``total`` into as few parts of at most ``most`` as possible, with
    sizes differing by one at most (no short last tile: 8 x 57 rows in bands of 29 + 28, not
    50 + 7, keep both threads busy and every GEMM large)."""
    parts = -(-total // max(most, 1))
    return -(-total // parts)


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
        step = _even(n_images, SCRATCH_BYTES // image_bytes)
        for n0 in range(0, n_images, step):
            yield slice(n0, min(n0 + step, n_images)), slice(0, rows), slice(0, cols)
    elif row_bytes <= SCRATCH_BYTES:
        step = _even(rows, SCRATCH_BYTES // row_bytes)
        for n in range(n_images):
            for r0 in range(0, rows, step):
                yield slice(n, n + 1), slice(r0, min(r0 + step, rows)), slice(0, cols)
    else:
        step = _even(cols, SCRATCH_BYTES // column_bytes)
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
    phases: bool | None = None,
) -> Array:
    """Valid cross-correlation of ``x (N, C, H, W)`` with ``weight (J, C/groups, kh, kw)``.

    Writes ``out (N, J, H_out, W_out)`` (C-contiguous) and returns it. Inputs are float32 and
    already validated; NaN/Inf propagate exactly to the outputs whose window holds them.
    ``phases``: copy the column phases first (module docstring); ``None``: where
    :func:`use_phases` says so.
    """
    xp = array_namespace(x)
    n_images = x.shape[0]
    n_filters, group_channels, kh, kw = weight.shape
    rows, cols = out.shape[-2:]
    (sy, sx), (dy, dx) = stride, dilation
    taps = group_channels * kh * kw
    span = (dy * (kh - 1) + 1, dx * (kw - 1) + 1)
    if phases is None:
        phases = use_phases(weight.shape, stride)
    phases = phases and sx > 1
    plan = column_phases(kw, sx, dx) if phases else [(0, 0, dx, list(range(kw)))]
    # columns of the weight matrix in the patch rows' order: (C/groups, phase, ky, tap of phase)
    weight_matrix = xp.ascontiguousarray(
        xp.concatenate(
            [
                weight[:, :, :, phase_taps].reshape(n_filters, group_channels, -1)
                for *_, phase_taps in plan
            ],
            axis=2,
        ).reshape(groups, n_filters // groups, taps)
    )
    out_groups = reshape_view(out, (n_images, groups, n_filters // groups, rows, cols))
    block = group_block(groups, taps * x.itemsize)
    column_bytes = block * taps * x.itemsize
    direct = kh == kw == 1 and sy == sx == 1  # 1x1: the input band is the patch matrix
    as_strided = xp.lib.stride_tricks.as_strided
    # (N, C, H_out, W_out, kh, kw): every window of every output pixel, as a view.
    windows = sliding_windows(x, span)[:, :, ::sy, ::sx, ::dy, ::dx]
    per_thread = threading.local()

    def scratch(name: str, items: int) -> Array:
        """This thread's buffer ``name`` of at least ``items``; a smaller one (a thread whose
        first tile was the short last one) is dropped before the larger one is made."""
        buffer = getattr(per_thread, name, None)
        if buffer is None or buffer.size < items:
            buffer = None
            setattr(per_thread, name, None)
            buffer = xp.empty(items, dtype=x.dtype)
            setattr(per_thread, name, buffer)
        return buffer[:items]

    def patch_matrix(blocks: slice, images: slice, band: slice, piece: slice) -> Array:
        """``(n, g, taps, h * w)`` patches of one tile, taps in the order of ``weight_matrix``."""
        n, g = images.stop - images.start, blocks.stop - blocks.start
        h, w = band.stop - band.start, piece.stop - piece.start
        chans = slice(blocks.start * group_channels, blocks.stop * group_channels)
        if direct and w == cols:
            with contextlib.suppress(ValueError):  # not a view: copy below
                return reshape_view(x[images, chans, band], (n, g, taps, h * w))
        patches = scratch("patches", n * g * taps * h * w).reshape(n, g * group_channels, -1, h, w)
        if not phases:
            # (n, C, kh, kw, h, w) <- (n, C, h, w, kh, kw): taps outer, pixels inner.
            xp.copyto(
                patches.reshape(n, g * group_channels, kh, kw, h, w),
                windows[images, chans, band, piece].transpose(0, 1, 4, 5, 2, 3),
            )
            return patches.reshape(n, g, taps, h * w)
        in_rows = slice(band.start * sy, (band.stop - 1) * sy + span[0])
        height = in_rows.stop - in_rows.start
        row = 0
        for q, first, step, phase_taps in plan:
            # columns first + m * step + ox of the phase image q, for ox in the piece
            length = (w - 1) + first + (len(phase_taps) - 1) * step + 1
            start = piece.start * sx + q
            image = scratch("phase", n * g * group_channels * height * length).reshape(
                n, g * group_channels, height, length
            )
            xp.copyto(image, x[images, chans, in_rows, start : start + (length - 1) * sx + 1 : sx])
            # (n, C, kh, taps of the phase, h, w): tap (ky, m) of output (oy, ox) reads
            # image[..., oy s_y + ky d_y, first + m step + ox] (the image is C-contiguous; a
            # strided view is ~4x cheaper to make than sliding_windows, 100 per call)
            item = x.itemsize
            phase_windows = as_strided(
                image[..., first:],
                (n, g * group_channels, kh, len(phase_taps), h, w),
                (
                    g * group_channels * height * length * item,
                    height * length * item,
                    dy * length * item,
                    step * item,
                    sy * length * item,
                    item,
                ),
            )
            count = kh * len(phase_taps)
            xp.copyto(
                reshape_view(
                    patches[:, :, row : row + count],
                    (n, g * group_channels, kh, len(phase_taps), h, w),
                ),
                phase_windows,
            )
            row += count
        return patches.reshape(n, g, taps, h * w)

    def tile(blocks: slice, images: slice, band: slice, piece: slice) -> None:
        n, g = images.stop - images.start, blocks.stop - blocks.start
        h, w = band.stop - band.start, piece.stop - piece.start
        patches = patch_matrix(blocks, images, band, piece)
        target = reshape_view(
            out_groups[images, blocks, :, band, piece], (n, g, n_filters // groups, h * w)
        )
        with _quiet_nan(xp):
            xp.matmul(weight_matrix[blocks], patches, out=target)

    run_tiles(
        lambda item: tile(*item),
        (
            (slice(g0, min(g0 + block, groups)), *item)
            for g0 in range(0, groups, block)
            for item in _tiles(n_images, rows, cols, column_bytes)
        ),
        parallel=xp.__name__ == "numpy",
    )
    return out
