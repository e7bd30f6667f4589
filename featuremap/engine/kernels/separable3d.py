"""Separable 3-D convolution for banks whose every kernel is rank 1: ``w[j, c] = a (x) b (x) v``.

Rank 1 is found in float64 like in 2-D (:data:`.separable.RANK1_RTOL`): the kernel unfolded to
``(kz, ky kx)`` must be rank 1, which gives the unit ``z`` filter ``a`` (largest entry positive)
and the plane kernel ``a . w`` (the scale included), itself rank 1 (:func:`.separable.plan_separable`).

The ``z`` pass comes first, on the input itself: per input channel, each distinct ``z`` filter is
a banded GEMM over planes (:func:`.separable.column_matrix`, every plane flattened to one row of
the right operand), then its plane kernels run as the 2-D separable passes of
:func:`.separable.separable_conv` (distinct ``x`` filters, then banded GEMMs along ``y``) on the
filtered planes. A Gaussian-derivative bank of orders ``(oz, oy, ox)``, ``oz + oy + ox <= 2``, at
one sigma (10 filters) makes 3 ``z`` passes, 6 ``x`` passes (3 + 2 + 1 behind the three ``z``
filters) and 10 ``y`` passes. Doing ``x`` first (3 ``x``, 6 ``y``, 10 ``z`` passes) would need
the ``(x, y)``-filtered planes of a whole slab plus its ``span - 1`` neighbour planes at once, or
recompute the neighbours of every slab; ``z`` first reads the input, which is all there. Zero
borders (small sigmas in a bank padded to the largest kernel) are trimmed off every filter, so a
sigma-1 kernel in a 29^3 bank costs its own 9 taps per axis.

Slabs of output planes (:func:`plane_chunks`, about :data:`SLAB_BYTES` of filtered planes and
the 2-D passes' bands) bound the memory; the 2-D passes write straight into the output. The
``z`` pass runs in parallel over pieces of the planes, the 2-D passes over bands of rows
(:mod:`._threads`).

Measured (``benchmarks/conv3d.py``, 2-core AMD EPYC, 2 threads): featuremap's Gaussian bank of
orders <= 2 at sigmas 1, 1.6 and 3.5 (30 filters, 29^3) on a 64 x 256 x 256 volume, 0.35 s against
4.6 s for ``scipy.ndimage.gaussian_filter`` per filter (13x; largest error 3.7e-7 of each filter's
largest response). On one thread 0.5 s: the banded GEMMs along ``y`` and ``z`` 0.16 s, the ``x``
passes 0.23 s (patch copy 0.12 s, GEMM 0.11 s), the SVDs of the plan 15 ms.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy

from featuremap._typing import Array
from featuremap.engine.kernels import cost
from featuremap.engine.kernels._namespace import array_namespace
from featuremap.engine.kernels._threads import blas_threads, run_tiles
from featuremap.engine.kernels.gemm import _even
from featuremap.engine.kernels.separable import (
    _DEDUPE_ATOL,
    COLUMN_BLOCK,
    RANK1_RTOL,
    ChannelPlan,
    _column_pass,
    _to_host,
    column_matrix,
    plan_separable,
    separable_conv,
)

__all__ = [
    "CALL_SECONDS",
    "COPY_SECONDS",
    "SLAB_BYTES",
    "VolumePlan",
    "ZFilter",
    "estimate_seconds",
    "plan_separable3d",
    "plane_chunks",
    "separable_conv3d",
]

#: Scratch per slab of planes: the folds' responses or input slab, the separable path's
#: ``z``-filtered planes. Fewer, larger slabs mean fewer 2-D calls (each ~0.4 ms beyond its work,
#: and its fresh memory faulted in); ``filters`` fold, best of 9, 2 threads: C=32 J=32 k=3 on
#: 32 x 96^2 0.076 s with 16 MB, 0.066 s with 32 MB, 0.062 s with 128 MB; C=4 J=8 k=7 on
#: 32 x 96^2 0.043 s with 24 MB, 0.039 s with 64 MB, 0.037 s with 128 MB (one call).
SLAB_BYTES = 128 << 20
#: Seconds per element copied between layouts (slabs, responses into the output; 2 threads).
COPY_SECONDS = 0.3e-9
#: Seconds of one 2-D call or pass beyond its work: thread pools, scratch, planning (0.3-0.4 ms
#: measured).
CALL_SECONDS = 0.3e-3
#: Taps of a ``z`` filter below this fraction of its largest are the zero border of a smaller
#: kernel padded into the bank (the SVD leaves ~1e-17 there), trimmed off.
TRIM_RTOL = 1e-12
#: Relative residual of :func:`_far_from_rank1` above which no SVD is tried: far above what a
#: kernel the SVD accepts (second singular value within RANK1_RTOL of the first) can have.
PREFILTER_RTOL = 1e-3
#: Elements of a flattened plane per piece of the parallel ``z`` pass.
Z_PIECE = 16384


@dataclass(frozen=True)
class ZFilter:
    """One distinct ``z`` filter of an input channel and the plane kernels that follow it.

    ``taps`` is the trimmed unit filter starting at tap ``first``; ``outputs`` the filters ``j``
    it serves; ``origin`` and ``size`` the ``(y, x)`` support of their plane kernels (trimmed);
    ``plans`` their 2-D separable plan (one input channel).
    """

    taps: numpy.ndarray
    first: int
    outputs: tuple[int, ...]
    origin: tuple[int, int]
    size: tuple[int, int]
    plans: list[ChannelPlan]


@dataclass(frozen=True)
class VolumePlan:
    """The ``z`` filters applied to input channel ``channel``."""

    channel: int
    filters: tuple[ZFilter, ...]


def _support(values: numpy.ndarray, threshold: float) -> tuple[int, int]:
    """``[start, stop)`` of the entries above ``threshold`` in absolute value; ``(0, 1)`` if none."""
    above = numpy.flatnonzero(numpy.abs(values) > threshold)
    return (int(above[0]), int(above[-1]) + 1) if above.size else (0, 1)


def _far_from_rank1(matrices: numpy.ndarray) -> bool:
    """Whether some matrix ``(..., m, n)`` is far from rank 1: its rows minus their projections
    on its largest row keep more than :data:`PREFILTER_RTOL` of its norm. A few vectorised passes
    (~0.1 ms for a 32 x 32 x 3^3 bank, where the SVDs take 4 ms), so learned banks skip the SVD."""
    largest = numpy.take_along_axis(
        matrices, numpy.square(matrices).sum(axis=-1).argmax(axis=-1)[..., None, None], axis=-2
    )
    norm2 = numpy.maximum(numpy.square(largest).sum(axis=-1, keepdims=True), 1e-300)
    residual = matrices - (matrices @ numpy.swapaxes(largest, -1, -2)) / norm2 * largest
    return bool(
        numpy.any(
            numpy.square(residual).sum(axis=(-2, -1))
            > PREFILTER_RTOL**2 * numpy.square(matrices).sum(axis=(-2, -1))
        )
    )


def _z_factors(weight: numpy.ndarray) -> numpy.ndarray | None:
    """Unit ``z`` filters ``(J, C/groups, kz)`` (largest entry positive), or None when a kernel
    unfolded to ``(kz, ky kx)`` is not rank 1."""
    n_filters, group_channels, kz = weight.shape[:3]
    unfolded = weight.reshape(n_filters, group_channels, kz, -1)
    if _far_from_rank1(unfolded):
        return None
    u, singular, _ = numpy.linalg.svd(unfolded, full_matrices=False)
    if singular.shape[-1] > 1 and numpy.any(singular[..., 1] > RANK1_RTOL * singular[..., 0]):
        return None
    z = u[..., :, 0]
    peak = numpy.take_along_axis(z, numpy.abs(z).argmax(axis=-1)[..., None], axis=-1)
    return z * numpy.where(peak < 0, -1.0, 1.0)


def _z_filter(
    z: numpy.ndarray, outputs: list[int], kernels: numpy.ndarray, store: bool
) -> ZFilter | None:
    """The :class:`ZFilter` of unit ``z`` filter ``z`` serving ``outputs`` with plane kernels
    ``kernels (n, ky, kx)``, trimmed; None when a plane kernel is not rank 1. Its 2-D plan
    writes the bank's outputs ``j`` (stored where ``store``: the first channel of the group,
    else added)."""
    first, stop = _support(z, TRIM_RTOL * numpy.abs(z).max())
    row0, row1 = _support(numpy.abs(kernels).max(axis=(0, 2)), 0.0)
    col0, col1 = _support(numpy.abs(kernels).max(axis=(0, 1)), 0.0)
    trimmed = kernels[:, row0:row1, col0:col1]
    plans = plan_separable(trimmed[:, None], 1)
    if plans is None:
        return None
    plans = [
        replace(
            plan,
            first=store,
            columns=tuple((tuple(outputs[i] for i in js), f) for js, f in plan.columns),
        )
        for plan in plans
    ]
    return ZFilter(z[first:stop], first, tuple(outputs), (row0, col0), trimmed.shape[1:], plans)


#: Plans of the last few weights, by their bytes' digest: a job's blocks all use the same bank,
#: whose SVDs (14 ms of a 90 ms block for a 30-filter 29^3 bank) are then done once per worker.
_PLANS: dict[tuple[object, ...], list[VolumePlan] | None] = {}
_PLANS_KEPT = 8


def plan_separable3d(weight: Array, groups: int) -> list[VolumePlan] | None:
    """The per-channel plan of ``weight (J, C/groups, kz, ky, kx)``, or None if a kernel is not
    rank 1. ``z`` filters are deduplicated per input channel, plane kernels per ``z`` filter
    (by :func:`.separable.plan_separable`'s row filters). Remembered for the last
    :data:`_PLANS_KEPT` weights (by digest: a weight changed in place is planned again)."""
    w = _to_host(weight)
    key = (w.shape, groups, hashlib.blake2b(w.tobytes(), digest_size=16).digest())
    if key not in _PLANS:
        if len(_PLANS) >= _PLANS_KEPT:
            _PLANS.pop(next(iter(_PLANS)))
        _PLANS[key] = _plan(w, groups)
    return _PLANS[key]


def _plan(w: numpy.ndarray, groups: int) -> list[VolumePlan] | None:
    """:func:`plan_separable3d` of a float64 host weight, computed."""
    z = _z_factors(w)
    if z is None:
        return None
    planes = numpy.einsum("jct,jctyx->jcyx", z, w)  # the plane kernel, scale included
    n_filters, group_channels = w.shape[:2]
    per_group = n_filters // groups
    plans = []
    for channel in range(groups * group_channels):
        group, local = divmod(channel, group_channels)
        distinct: list[numpy.ndarray] = []
        users: list[list[int]] = []
        for j in range(group * per_group, (group + 1) * per_group):
            match = next(
                (
                    p
                    for p, f in enumerate(distinct)
                    if numpy.abs(f - z[j, local]).max() <= _DEDUPE_ATOL
                ),
                None,
            )
            if match is None:
                distinct.append(z[j, local])
                users.append([])
                match = len(distinct) - 1
            users[match].append(j)
        filters = [
            _z_filter(f, js, planes[js, local], local == 0)
            for f, js in zip(distinct, users, strict=True)
        ]
        if any(f is None for f in filters):
            return None
        plans.append(VolumePlan(channel, tuple(f for f in filters if f is not None)))
    return plans


def plane_chunks(
    n_volumes: int, planes: int, plane_bytes: int, multiple: int = 1
) -> Iterator[tuple[slice, slice]]:
    """``(volumes, planes)`` slices of about :data:`SLAB_BYTES` each: several whole volumes, or
    slabs of planes of one volume, as few and as even as a multiple of ``multiple`` planes
    allows (every call costs :data:`CALL_SECONDS` beyond its work)."""
    if planes * plane_bytes <= SLAB_BYTES:
        step = _even(n_volumes, SLAB_BYTES // max(planes * plane_bytes, 1))
        for n0 in range(0, n_volumes, step):
            yield slice(n0, min(n0 + step, n_volumes)), slice(0, planes)
        return
    step = _even(planes, max(multiple, SLAB_BYTES // plane_bytes))
    step = -(-step // multiple) * multiple
    for n in range(n_volumes):
        for p0 in range(0, planes, step):
            yield slice(n, n + 1), slice(p0, min(p0 + step, planes))


def _regions(
    f: ZFilter,
    out_hw: tuple[int, int],
    stride: tuple[int, int, int],
    dilation: tuple[int, int, int],
) -> tuple[slice, slice]:
    """Input rows and columns that the trimmed plane kernels of ``f`` read."""
    (_, sy, sx), (_, dy, dx) = stride, dilation
    (row0, col0), (kh, kw) = f.origin, f.size
    rows = slice(row0 * dy, row0 * dy + (out_hw[0] - 1) * sy + dy * (kh - 1) + 1)
    cols = slice(col0 * dx, col0 * dx + (out_hw[1] - 1) * sx + dx * (kw - 1) + 1)
    return rows, cols


def _plane_bytes(
    x_shape: tuple[int, ...],
    out_hw: tuple[int, ...],
    plans: list[VolumePlan],
    stride: tuple[int, int, int],
    dilation: tuple[int, int, int],
) -> int:
    """Scratch per output plane of a slab: its ``z``-filtered plane, and what the 2-D passes of
    :func:`.separable.separable_conv` hold per image on each thread (the row-filtered band of
    at least ``COLUMN_BLOCK`` output rows per distinct row filter)."""
    largest = 0
    for plan in plans:
        for f in plan.filters:
            rows, _ = _regions(f, (out_hw[0], out_hw[1]), stride, dilation)
            height = rows.stop - rows.start
            band = min(height, (COLUMN_BLOCK - 1) * stride[1] + dilation[1] * (f.size[0] - 1) + 1)
            row_filters = max(len(p.rows) for p in f.plans)
            band_bytes = blas_threads() * row_filters * band * out_hw[1]
            largest = max(largest, height * x_shape[-1] + band_bytes)
    return 4 * largest


def estimate_seconds(
    x_shape: tuple[int, ...],
    out_shape: tuple[int, int, int],
    plans: list[VolumePlan],
    stride: tuple[int, int, int],
    dilation: tuple[int, int, int],
) -> float:
    """Estimated seconds of :func:`separable_conv3d` on padded volumes ``x_shape (..., C, D, H, W)``
    giving ``out_shape (D_out, H_out, W_out)``: per ``z`` filter its banded GEMM (like the column
    pass of :func:`.cost.estimate_seconds`), its 2-D separable passes, and :data:`CALL_SECONDS`
    per volume, slab and ``z`` filter."""
    volumes, width = math.prod(x_shape[:-4]), x_shape[-1]
    out_d, out_h, out_w = out_shape
    images = volumes * out_d
    plane_bytes = _plane_bytes(x_shape, (out_h, out_w), plans, stride, dilation)
    slabs = sum(
        v.stop - v.start for v, _ in plane_chunks(volumes, out_d, plane_bytes, COLUMN_BLOCK)
    )
    seconds = 0.0
    for plan in plans:
        for f in plan.filters:
            rows, cols = _regions(f, (out_h, out_w), stride, dilation)
            rows_in, cols_in = rows.stop - rows.start, cols.stop - cols.start
            span = dilation[0] * (len(f.taps) - 1) + 1
            block_span = (COLUMN_BLOCK - 1) * stride[0] + span
            seconds += 2.0 * images * rows_in * width * block_span / cost.GEMM_FLOPS
            seconds += cost.estimate_seconds(
                "separable",
                (images, 1, rows_in, cols_in),
                (len(f.outputs), 1, *f.size),
                stride[1:],
                dilation[1:],
                1,
                max(len(p.rows) for p in f.plans),
            )
            seconds += slabs * CALL_SECONDS
    return seconds


def separable_conv3d(
    x: Array,
    plans: list[VolumePlan],
    stride: tuple[int, int, int],
    dilation: tuple[int, int, int],
    out: Array,
) -> Array:
    """Valid cross-correlation of finite ``x (N, C, D, H, W)`` by 1-D passes into ``out (N, J,
    D_out, H_out, W_out)`` (the first channel of a group stored, the others added), slab by slab
    of output planes: the ``z`` pass fills a slab of filtered planes, whose 2-D passes write
    straight into the output."""
    out_d, out_h, out_w = out.shape[-3:]
    plane_bytes = _plane_bytes(x.shape, (out_h, out_w), plans, stride, dilation)
    for volumes, planes in plane_chunks(x.shape[0], out_d, plane_bytes, COLUMN_BLOCK):
        for plan in plans:
            for f in plan.filters:
                filtered = _z_pass(
                    x[volumes, plan.channel], f, planes, stride, dilation, out.shape[-2:]
                )
                _, cols = _regions(f, (out_h, out_w), stride, dilation)
                for n, images in enumerate(filtered[:, :, None, :, cols]):
                    # (planes, J, H_out, W_out) of volume n: the 2-D passes write into it
                    target = out[volumes.start + n, :, planes].transpose(1, 0, 2, 3)
                    separable_conv(images, f.plans, stride[1:], dilation[1:], target)
    return out


def _z_pass(
    x: Array,
    f: ZFilter,
    planes: slice,
    stride: tuple[int, int, int],
    dilation: tuple[int, int, int],
    out_hw: tuple[int, ...],
) -> Array:
    """``(n, planes, rows, W)``: the ``z`` filter of ``f`` over ``x (n, D, H, W)`` for output
    ``planes``, on the rows its plane kernels read; banded GEMMs in parallel pieces."""
    xp = array_namespace(x)
    (sz, _, _), (dz, _, _) = stride, dilation
    rows, _ = _regions(f, (out_hw[0], out_hw[1]), stride, dilation)
    span = dz * (len(f.taps) - 1) + 1
    start = planes.start * sz + f.first * dz
    source = x[:, start : (planes.stop - 1) * sz + f.first * dz + span, rows]
    n, count, height, width = (
        x.shape[0],
        planes.stop - planes.start,
        rows.stop - rows.start,
        x.shape[-1],
    )
    source = source.reshape((n, source.shape[1], height * width))
    filtered = xp.empty((n, count, height * width), dtype=x.dtype)
    matrix = xp.asarray(column_matrix(f.taps, COLUMN_BLOCK, sz, dz), dtype=x.dtype)
    size = height * width
    step = _even(size, Z_PIECE)

    def piece(c0: int) -> None:
        columns = slice(c0, min(c0 + step, size))
        _column_pass(
            source[..., columns], matrix, (0, count), sz, span, filtered[..., columns], True
        )

    run_tiles(piece, range(0, size, step), parallel=xp.__name__ == "numpy")
    return filtered.reshape((n, count, height, width))
