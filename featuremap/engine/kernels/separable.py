"""Separable convolution for banks whose every 2-D kernel is exactly rank 1.

``w[j, c] = u[j, c] (outer) v[j, c]``, found by an SVD in float64 (second singular value at most
:data:`RANK1_RTOL` of the first). The row filters ``v`` are normalised (unit norm, largest entry
positive, the scale moved to ``u``) and deduplicated per input channel, so a Gaussian-derivative
bank of 3 scales x 6 orders (J=18) filters along ``x`` with 9 distinct row filters only.

Zero borders are trimmed off every row and column filter (:data:`TRIM_RTOL`): in a bank padded
to its largest kernel -- the pixel features' 43 derivatives at σ 0.3 to 10 padded to 81 x 81 --
each filter costs its own taps. Per input channel the row filters are split into passes
(:func:`_row_passes`, by a cost model in multiply-adds): a wide filter runs alone as banded
GEMMs along ``x`` (:data:`ROW_BLOCK` output columns per GEMM, on the input itself: no patch
copy), narrow ones share one im2col GEMM (:mod:`.gemm`) over their common support. The column
pass multiplies a small banded matrix with the row-filtered band directly (no patch copy), one
GEMM per :data:`COLUMN_BLOCK` output rows; one-tap filters are plain multiplications.

The work runs in bands of output rows, in parallel (:mod:`._threads`), so the row-filtered
band stays in cache; a band is many times taller than the column span, so that the rows read
twice (the span's overlap of neighbouring bands) are few.

Measured (2-core AMD EPYC, OpenBLAS Haswell kernel, one thread, 2048^2 float32): one banded
column pass 9.5 ms at 81 taps, 2.8 ms at 7; a banded row pass 10.7 ms at 81 taps, 5.1 ms at 7
(the im2col row pass 34 ms and 4.6 ms). The pixel features' derivatives (ilastik's set: 43
derivatives padded to 81 x 81, 22 distinct row filters, as one bank; :func:`separable_conv`,
best of 3): 1.8 s before trimming (every filter 81 taps, bands of 16 output rows re-filtering
80 rows each), 0.33 s after. The whole set:
``python benchmarks/pixel_features.py --only 2d`` (0.99 s against fastfilters2's 1.01 s).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import numpy

from featuremap._typing import Array
from featuremap.engine.kernels._namespace import array_namespace
from featuremap.engine.kernels._threads import blas_threads, run_tiles
from featuremap.engine.kernels.gemm import _even, gemm_conv

__all__ = [
    "COLUMN_BLOCK",
    "RANK1_RTOL",
    "ROW_BLOCK",
    "TRIM_RTOL",
    "ChannelPlan",
    "column_matrix",
    "plan_separable",
    "separable_conv",
]

#: Relative size of the second singular value below which a kernel counts as rank 1; the
#: factorisation error is then below float32 rounding of the result.
RANK1_RTOL = 1e-6
_DEDUPE_ATOL = 1e-7
#: Output rows per column GEMM: the banded matrix does (block - 1) * stride + span multiply-adds
#: per output instead of kh, so small blocks waste less; 16 keeps the GEMMs large enough
#: (one thread, 2048^2: 9.5 ms at 81 taps against 10.7 ms with 8 rows and 9.7 ms with 32).
COLUMN_BLOCK = 16
#: Output columns per banded row GEMM (one thread, 2048^2, 81 taps: 10.7 ms with 32, 11.0 ms
#: with 64, 11.7 ms with 16).
ROW_BLOCK = 32
#: Taps below this fraction of a filter's largest are the zero border of a smaller kernel padded
#: into the bank (the SVD leaves ~1e-17 there): trimmed off.
TRIM_RTOL = 1e-12
#: The im2col row pass copies every tap of every pixel before its GEMM: one copied element costs
#: about this many multiply-adds (one thread, 2048^2: 34 ms for 81 taps, 4.6 ms for 7).
PATCH_MACS = 4.0
#: Most row filters sharing one im2col pass (their row-filtered band is held at once).
MAX_SHARED = 8
#: Row-filtered scratch per band and thread; a band is at least BAND_SPANS column spans tall.
BAND_BYTES = 8 << 20
BAND_SPANS = 4
#: Output pixels per thread below which a call is not split for the threads.
TILE_PIXELS = 1 << 16


@dataclass(frozen=True)
class ChannelPlan:
    """The 1-D filters applied to one input channel.

    ``first`` marks the first channel of its group (its results are stored, later channels' added);
    ``rows`` holds the distinct row filters ``(P, kw)``; ``columns[p]`` the output indices and
    column filters ``(n_p, kh)`` of the outputs that use row filter ``p``.
    """

    channel: int
    first: bool
    rows: numpy.ndarray
    columns: tuple[tuple[tuple[int, ...], numpy.ndarray], ...]


def _to_host(weight: Array) -> numpy.ndarray:
    if array_namespace(weight) is numpy:
        return numpy.asarray(weight, dtype=numpy.float64)
    device_weight: Any = weight  # a CuPy array
    return numpy.asarray(device_weight.get(), dtype=numpy.float64)  # pragma: no cover - CuPy only


def _rank1_factors(weight: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray] | None:
    """``(u (J, Cg, kh), v (J, Cg, kw))`` with ``|v| = 1``, or None when a kernel is not rank 1."""
    u_basis, singular, v_basis = numpy.linalg.svd(weight)
    if singular.shape[-1] > 1 and numpy.any(singular[..., 1] > RANK1_RTOL * singular[..., 0]):
        return None
    u = u_basis[..., :, 0] * singular[..., :1]
    v = v_basis[..., 0, :]
    # Fix the sign so that equal row filters compare equal: largest |entry| positive.
    peak = numpy.take_along_axis(v, numpy.abs(v).argmax(axis=-1)[..., None], axis=-1)
    sign = numpy.where(peak < 0, -1.0, 1.0)
    return u * sign, v * sign


#: Plans of the last few weights, by their bytes' digest: a job's blocks all use the same bank,
#: whose SVDs (24 ms for the pixel features' 43 kernels of 81 x 81) are then done once.
_PLANS: dict[tuple[object, ...], list[ChannelPlan] | None] = {}
_PLANS_KEPT = 8
_PLANS_LOCK = threading.Lock()


def plan_separable(weight: Array, groups: int) -> list[ChannelPlan] | None:
    """The per-channel 1-D filter plan of ``weight (J, C/groups, kh, kw)``, or None if not rank 1.
    Remembered for the last :data:`_PLANS_KEPT` weights (by digest)."""
    w = _to_host(weight)
    key = (w.shape, groups, hashlib.blake2b(w.tobytes(), digest_size=16).digest())
    with _PLANS_LOCK:
        if key in _PLANS:
            return _PLANS[key]
    plans = _plan(w, groups)
    with _PLANS_LOCK:
        if len(_PLANS) >= _PLANS_KEPT:
            _PLANS.pop(next(iter(_PLANS)))
        _PLANS[key] = plans
    return plans


def _plan(w: numpy.ndarray, groups: int) -> list[ChannelPlan] | None:
    factors = _rank1_factors(w)
    if factors is None:
        return None
    u, v = factors
    n_filters, group_channels = u.shape[:2]
    filters_per_group = n_filters // groups
    plans = []
    for channel in range(groups * group_channels):
        group, local = divmod(channel, group_channels)
        rows: list[numpy.ndarray] = []
        users: list[list[int]] = []
        for j in range(group * filters_per_group, (group + 1) * filters_per_group):
            match = next(
                (
                    p
                    for p, row in enumerate(rows)
                    if numpy.abs(row - v[j, local]).max() <= _DEDUPE_ATOL
                ),
                None,
            )
            if match is None:
                rows.append(v[j, local])
                users.append([])
                match = len(rows) - 1
            users[match].append(j)
        columns = tuple((tuple(js), numpy.stack([u[j, local] for j in js])) for js in users)
        plans.append(ChannelPlan(channel, local == 0, numpy.stack(rows), columns))
    return plans


def column_matrix(
    column_filter: numpy.ndarray, rows: int, stride: int, dilation: int
) -> numpy.ndarray:
    """Banded ``(rows, (rows - 1) * stride + span)`` matrix ``M`` with ``M @ a`` = valid correlation.

    Row ``i`` holds the filter at columns ``i * stride + t * dilation``: filtering along ``y``
    becomes a GEMM on the row-filtered image itself, without copying patches.
    """
    span = dilation * (len(column_filter) - 1) + 1
    matrix = numpy.zeros((rows, (rows - 1) * stride + span))
    for i in range(rows):
        matrix[i, i * stride : i * stride + span : dilation] = column_filter
    return matrix


def _support(values: numpy.ndarray) -> tuple[int, int]:
    """``[start, stop)`` of the taps above :data:`TRIM_RTOL` of the largest; ``(0, 1)`` if none."""
    magnitude = numpy.abs(values)
    above = numpy.flatnonzero(magnitude > TRIM_RTOL * magnitude.max(initial=0.0))
    return (int(above[0]), int(above[-1]) + 1) if above.size else (0, 1)


@dataclass(frozen=True)
class _Column:
    """One output's trimmed column filter: output ``j``, first tap ``start``, ``taps``."""

    output: int
    start: int
    taps: numpy.ndarray


@dataclass(frozen=True)
class _RowPass:
    """Row filters of one channel filtered together: trimmed to the common support ``[start,
    start + weights.shape[1])``, banded (one filter) or one im2col GEMM; ``columns[p]`` the
    outputs of filter ``p``; ``rows``: the taps ``[lo, hi)`` their column filters span."""

    channel: int
    store: bool
    banded: bool
    start: int
    weights: numpy.ndarray
    columns: tuple[tuple[_Column, ...], ...]

    @property
    def rows(self) -> tuple[int, int]:
        columns = [c for users in self.columns for c in users]
        return min(c.start for c in columns), max(c.start + len(c.taps) for c in columns)


def _im2col_macs(width: int, filters: int) -> float:
    return width * (PATCH_MACS + filters)


def _banded_macs(width: int) -> float:
    return ROW_BLOCK - 1 + width if width > 1 else 1.0


def _row_passes(plan: ChannelPlan, banded_rows: bool = True) -> list[_RowPass]:
    """The row filters of ``plan`` trimmed and split into passes of the least multiply-adds per
    pixel: sorted by width, consecutive runs either share an im2col GEMM over the widest one's
    support (at most :data:`MAX_SHARED`) or run banded one by one (an exact split, found by
    dynamic programming over the sorted filters). ``banded_rows=False`` (CuPy, where every GEMM
    is a kernel launch) bands one-tap filters only."""
    supports = [_support(row) for row in plan.rows]
    order = sorted(range(len(supports)), key=lambda p: supports[p][0] - supports[p][1])
    widths = [supports[p][1] - supports[p][0] for p in order]
    best = [0.0] + [float("inf")] * len(order)
    split: list[tuple[int, bool]] = [(0, True)] * (len(order) + 1)
    for stop in range(1, len(order) + 1):
        for begin in range(max(0, stop - MAX_SHARED), stop):
            members = [order[i] for i in range(begin, stop)]
            lo = min(supports[p][0] for p in members)
            hi = max(supports[p][1] for p in members)
            banded = sum(_banded_macs(widths[i]) for i in range(begin, stop))
            if not banded_rows and any(widths[i] > 1 for i in range(begin, stop)):
                banded = float("inf")
            shared = _im2col_macs(hi - lo, stop - begin) if hi - lo > 1 else banded
            cost = best[begin] + min(banded, shared)
            if cost < best[stop]:
                best[stop], split[stop] = cost, (begin, banded <= shared)
    groups: list[tuple[list[int], bool]] = []
    stop = len(order)
    while stop:
        begin, banded = split[stop]
        members = [order[i] for i in range(begin, stop)]
        groups += [([p], True) for p in members] if banded else [(members, False)]
        stop = begin
    passes = []
    for members, banded in reversed(groups):
        lo = min(supports[p][0] for p in members)
        hi = max(supports[p][1] for p in members)
        columns = []
        for p in members:
            outputs, filters = plan.columns[p]
            trimmed = []
            for j, f in zip(outputs, filters, strict=True):
                c0, c1 = _support(f)
                trimmed.append(_Column(j, c0, f[c0:c1]))
            columns.append(tuple(trimmed))
        weights = numpy.stack([plan.rows[p, lo:hi] for p in members])
        passes.append(_RowPass(plan.channel, plan.first, banded, lo, weights, tuple(columns)))
    return passes


def separable_conv(
    x: Array,
    plans: list[ChannelPlan],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out: Array,
) -> Array:
    """Valid cross-correlation of finite ``x (N, C, H, W)`` by row then column passes into ``out``.

    Works in bands of output rows, in parallel (:mod:`._threads`), so the row-filtered images
    stay in cache and memory stays bounded. Per band and row pass (:func:`_row_passes`): the
    row filters into a per-thread scratch band, then per output, blocks of COLUMN_BLOCK rows are
    a GEMM of the banded :func:`column_matrix` with the row-filtered band, written straight into
    ``out``.
    """
    xp = array_namespace(x)
    if x.strides[-1] != x.itemsize:
        x = xp.ascontiguousarray(x)
    (sy, sx), (dy, dx) = stride, dilation
    n_images = x.shape[0]
    rows_out, cols_out = out.shape[-2:]
    passes = [p for plan in plans for p in _row_passes(plan, xp is numpy)]
    row_matrices = [
        xp.asarray(column_matrix(p.weights[0], ROW_BLOCK, sx, dx).T, dtype=x.dtype)
        if p.banded and p.weights.shape[1] > 1
        else xp.asarray(p.weights[:, None, None, :], dtype=x.dtype)
        for p in passes
    ]
    column_matrices = [
        [
            [
                xp.asarray(column_matrix(c.taps, COLUMN_BLOCK, sy, dy), dtype=x.dtype)
                if len(c.taps) > 1
                else float(c.taps[0])
                for c in users
            ]
            for users in p.columns
        ]
        for p in passes
    ]
    span = max(dy * (p.rows[1] - p.rows[0] - 1) + 1 for p in passes)
    row_bytes = max(len(p.weights) for p in passes) * cols_out * x.itemsize
    pixels = n_images * rows_out * cols_out
    images, band = _tile_sizes(n_images, rows_out, row_bytes, sy, span, pixels)
    scratch = threading.local()

    def tile(start: tuple[int, int]) -> None:
        n = slice(start[0], min(start[0] + images, n_images))
        r0, r1 = start[1], min(start[1] + band, rows_out)
        for p, row_matrix, matrices in zip(passes, row_matrices, column_matrices, strict=True):
            lo, hi = p.rows
            in_rows = slice(r0 * sy + lo * dy, (r1 - 1) * sy + (hi - 1) * dy + 1)
            shape = (n.stop - n.start, len(p.weights), in_rows.stop - in_rows.start, cols_out)
            size = shape[0] * shape[1] * shape[2] * shape[3]
            if getattr(scratch, "band", None) is None or scratch.band.size < size:
                scratch.band = None
                scratch.band = xp.empty(size, dtype=x.dtype)
            filtered = scratch.band[:size].reshape(shape)
            width = p.weights.shape[1]
            cols = slice(p.start * dx, p.start * dx + (cols_out - 1) * sx + dx * (width - 1) + 1)
            _row_pass(x[n, p.channel, in_rows, cols], p, row_matrix, (sx, dx), filtered)
            for f, users, column_filters in zip(
                filtered.transpose(1, 0, 2, 3), p.columns, matrices, strict=True
            ):
                for column, matrix in zip(users, column_filters, strict=True):
                    source = f[:, (column.start - lo) * dy :]
                    target = out[n, column.output]
                    if isinstance(matrix, float):
                        _scale_rows(source, matrix, (r0, r1), sy, target, p.store)
                    else:
                        span_c = dy * (len(column.taps) - 1) + 1
                        _column_pass(source, matrix, (r0, r1), sy, span_c, target, p.store)

    starts = [(n0, r0) for n0 in range(0, n_images, images) for r0 in range(0, rows_out, band)]
    run_tiles(tile, starts, parallel=xp.__name__ == "numpy")
    return out


def _tile_sizes(
    n_images: int, rows_out: int, row_bytes: int, stride: int, span: int, pixels: int = 0
) -> tuple[int, int]:
    """``(images, output rows)`` per tile: bands of :data:`BAND_SPANS` column spans or more
    and about :data:`BAND_BYTES` of row-filtered scratch (``row_bytes`` per image and input
    row), several images where one is small; even, and at least one tile per thread where the
    call has :data:`TILE_PIXELS` output ``pixels`` per thread (smaller calls run inline: no
    thread overhead, and their scratch does not depend on how the threads interleave)."""
    rows = max((BAND_BYTES // max(row_bytes, 1) - span) // stride + 1, BAND_SPANS * span, 1)
    rows = min(rows, rows_out)
    images = max(1, BAND_BYTES // max(row_bytes * ((rows - 1) * stride + span), 1))
    images = min(images, n_images)
    threads = min(blas_threads(), max(1, pixels // TILE_PIXELS))
    if -(-n_images // images) * -(-rows_out // rows) < threads:
        if n_images >= threads:
            images = -(-n_images // threads)
        else:
            rows = -(-rows_out // -(-threads // n_images))
    return _even(n_images, images), _even(rows_out, max(rows, COLUMN_BLOCK))


def _row_pass(
    source: Array,
    p: _RowPass,
    matrix: Array,
    step: tuple[int, int],
    filtered: Array,
) -> None:
    """``filtered (N, P, rows, W_out)`` = the row filters of ``p`` over ``source (N, rows, w)``."""
    xp = array_namespace(source)
    stride, dilation = step
    cols_out = filtered.shape[-1]
    width = p.weights.shape[1]
    if width == 1 and p.banded:  # one tap: a multiplication
        xp.multiply(
            source[..., ::stride][..., :cols_out], float(p.weights[0, 0]), out=filtered[:, 0]
        )
    elif p.banded:
        span = dilation * (width - 1) + 1
        for c0 in range(0, cols_out, ROW_BLOCK):
            c1 = min(c0 + ROW_BLOCK, cols_out)
            used = (c1 - c0 - 1) * stride + span
            xp.matmul(
                source[..., c0 * stride : c0 * stride + used],
                matrix[:used, : c1 - c0],
                out=filtered[:, 0, :, c0:c1],
            )
    else:
        gemm_conv(source[:, None], matrix, (1, stride), (1, dilation), 1, filtered)


def _scale_rows(
    filtered: Array, factor: float, rows: tuple[int, int], stride: int, out: Array, store: bool
) -> None:
    """A one-tap column filter: ``out[:, r0:r1]`` = (or +=) ``factor`` times rows of ``filtered``."""
    xp = array_namespace(filtered)
    r0, r1 = rows
    source = filtered[:, : (r1 - r0 - 1) * stride + 1 : stride]
    if store:
        xp.multiply(source, factor, out=out[:, r0:r1])
    else:
        out[:, r0:r1] += factor * source


def _column_pass(
    filtered: Array,
    matrix: Array,
    rows: tuple[int, int],
    stride: int,
    span: int,
    out: Array,
    store: bool,
) -> None:
    """``out[:, r0:r1]`` (N, rows, W) = (or +=) the column filter of ``matrix`` over ``filtered``."""
    xp = array_namespace(filtered)
    r0, r1 = rows
    for b0 in range(0, r1 - r0, COLUMN_BLOCK):
        b1 = min(b0 + COLUMN_BLOCK, r1 - r0)
        block = matrix[: b1 - b0, : (b1 - b0 - 1) * stride + span]
        source = filtered[:, b0 * stride : (b1 - 1) * stride + span]
        if store:
            xp.matmul(block, source, out=out[:, r0 + b0 : r0 + b1])
        else:
            out[:, r0 + b0 : r0 + b1] += xp.matmul(block, source)
