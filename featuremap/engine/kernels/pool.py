"""Max and average pooling of already padded inputs (``max_pool2d/3d`` / ``avg_pool2d/3d`` semantics).

The last ``len(kernel)`` axes (2: ``y, x``; 3: ``z, y, x``) are pooled; every leading axis is a
batch axis. Both reductions are separable: one pass per pooled axis, the last axis first, over
``k`` strided slices (``dilation`` apart for max pooling) -- ``kz + ky + kx`` vectorised passes
instead of ``kz * ky * kx``. Before the first pass the input is cut to what the windows read, so
no pass works on rows or planes that no output needs. ``maximum`` propagates NaN like PyTorch;
the average sums in float32 and divides by the window's size, or by a per-output ``divisor``
(PyTorch's ``count_include_pad=False``, ``ceil_mode`` windows cut at the border,
``divisor_override``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from featuremap._typing import Array
from featuremap.engine.geometry import output_length
from featuremap.engine.kernels._namespace import array_namespace
from featuremap.errors import InputError

__all__ = ["avg_pool_valid", "max_pool_valid"]

_AXES = "zyx"
_SHAPES = {1: "(..., W)", 2: "(..., H, W)", 3: "(..., D, H, W)"}


def _reduce(
    x: Array,
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    name: str,
    combine: Callable[..., Any],
) -> Array:
    """``combine`` over every window of the last ``len(kernel)`` axes, one pass per axis."""
    xp = array_namespace(x)
    n_axes = len(kernel)
    if not 1 <= n_axes <= len(_AXES) or len(stride) != n_axes or len(dilation) != n_axes:
        raise ValueError(
            f"kernel, stride and dilation need 1 to 3 values each, as many of each, got "
            f"{tuple(kernel)}, {tuple(stride)}, {tuple(dilation)}"
        )
    if x.ndim < n_axes:
        raise InputError(f"{name} needs an array of shape {_SHAPES[n_axes]}, got shape {x.shape}")
    first = x.ndim - n_axes
    out_shape = [
        output_length(x.shape[first + i], k, s, d, 0, 0, axis=_AXES[i - n_axes])
        for i, (k, s, d) in enumerate(zip(kernel, stride, dilation, strict=True))
    ]
    x = xp.asarray(x, dtype=xp.float32)
    # only what the windows read (the last axis is cut by its own pass's slices)
    used = tuple(
        slice(0, (n - 1) * s + d * (k - 1) + 1)
        for n, k, s, d in zip(out_shape[:-1], kernel[:-1], stride[:-1], dilation[:-1], strict=True)
    )
    out = x[(..., *used, slice(None))]
    for axis in reversed(range(n_axes)):
        taps = (kernel[axis], stride[axis], dilation[axis])
        out = _pass(out, axis - n_axes, taps, out_shape[axis], combine)
    return out


def _pass(
    x: Array, axis: int, taps: tuple[int, int, int], length: int, combine: Callable[..., Any]
) -> Array:
    """``combine`` of the ``kernel`` strided slices of ``x`` along ``axis`` (negative), ``length``
    outputs; ``taps`` = ``(kernel, stride, dilation)``. The first slice is copied, the others
    folded into it."""
    kernel, stride, dilation = taps
    span = (length - 1) * stride + 1
    after = (slice(None),) * (-axis - 1)

    def tap(t: int) -> Array:
        return x[(..., slice(t * dilation, t * dilation + span, stride), *after)]

    out = tap(0).copy()
    for t in range(1, kernel):
        combine(out, tap(t), out=out)
    return out


def max_pool_valid(
    x: Array,
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int] | None = None,
) -> Array:
    """Maximum over each ``kernel`` window (taps ``dilation`` apart, default 1) of the padded
    ``x (..., [D,] H, W)`` at ``stride``.

    ``kernel``, ``stride`` and ``dilation`` hold one value per pooled axis (the last
    ``len(kernel)`` axes of ``x``). Pad with ``-inf`` beforehand for PyTorch's padding semantics.
    """
    if dilation is None:
        dilation = (1,) * len(kernel)
    return _reduce(x, kernel, stride, dilation, "max_pool", array_namespace(x).maximum)


def avg_pool_valid(
    x: Array, kernel: Sequence[int], stride: Sequence[int], divisor: Any = None
) -> Array:
    """Mean over each full ``kernel`` window of the padded ``x (..., [D,] H, W)`` at ``stride``.

    Pad with zeros beforehand. ``divisor`` (a number, or an array broadcasting against the
    output's ``len(kernel)`` trailing axes) replaces the window's size ``prod(kernel)``, PyTorch's
    ``count_include_pad=True``.
    """
    xp = array_namespace(x)
    out = _reduce(x, kernel, stride, (1,) * len(kernel), "avg_pool", xp.add)
    if divisor is None:
        out *= xp.float32(1.0 / math.prod(kernel))
    else:
        out /= xp.asarray(divisor, dtype=xp.float32)
    return out
