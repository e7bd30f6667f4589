"""Max and average pooling of already padded inputs (``max_pool2d`` / ``avg_pool2d`` semantics).

Both reductions are separable: a pass along ``x`` over ``kw`` strided slices (``dilation`` apart
for max pooling), then along ``y`` over ``kh`` -- ``kh + kw`` vectorised passes instead of
``kh * kw``. ``maximum`` propagates NaN like PyTorch; the average sums in float32 and divides by
``kh * kw``, or by a per-output ``divisor`` (PyTorch's ``count_include_pad=False``, ``ceil_mode``
windows cut at the border, ``divisor_override``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from featuremap._typing import Array
from featuremap.engine.geometry import Pair, output_length
from featuremap.engine.kernels._namespace import array_namespace
from featuremap.errors import InputError

__all__ = ["avg_pool_valid", "max_pool_valid"]


def _reduce(
    x: Array, kernel: Pair, stride: Pair, dilation: Pair, name: str, combine: Callable[..., Any]
) -> Array:
    xp = array_namespace(x)
    if x.ndim < 2:
        raise InputError(f"{name} needs an array of shape (..., H, W), got shape {x.shape}")
    (kh, kw), (sy, sx), (dy, dx) = kernel, stride, dilation
    out_h = output_length(x.shape[-2], kh, sy, dy, 0, 0, axis="y")
    out_w = output_length(x.shape[-1], kw, sx, dx, 0, 0, axis="x")
    x = xp.asarray(x, dtype=xp.float32)
    # Along x first, on the rows the y pass will read; the first slice is copied, the rest folded in.
    rows = slice(0, (out_h - 1) * sy + dy * (kh - 1) + 1)
    span_x = (out_w - 1) * sx + 1
    across = x[..., rows, 0:span_x:sx].copy()
    for t in range(1, kw):
        combine(across, x[..., rows, t * dx : t * dx + span_x : sx], out=across)
    span_y = (out_h - 1) * sy + 1
    out = across[..., 0:span_y:sy, :].copy()
    for t in range(1, kh):
        combine(out, across[..., t * dy : t * dy + span_y : sy, :], out=out)
    return out


def max_pool_valid(x: Array, kernel: Pair, stride: Pair, dilation: Pair = (1, 1)) -> Array:
    """Maximum over each ``kernel`` window (taps ``dilation`` apart) of the padded
    ``x (..., H, W)`` at ``stride``.

    Pad with ``-inf`` beforehand for PyTorch's padding semantics.
    """
    return _reduce(x, kernel, stride, dilation, "max_pool", array_namespace(x).maximum)


def avg_pool_valid(x: Array, kernel: Pair, stride: Pair, divisor: Any = None) -> Array:
    """Mean over each full ``kernel`` window of the padded ``x (..., H, W)`` at ``stride``.

    Pad with zeros beforehand. ``divisor`` (a number, or an array broadcasting against the
    output's ``(H_out, W_out)``) replaces ``kh * kw``, PyTorch's ``count_include_pad=True``.
    """
    xp = array_namespace(x)
    out = _reduce(x, kernel, stride, (1, 1), "avg_pool", xp.add)
    if divisor is None:
        out *= xp.float32(1.0 / (kernel[0] * kernel[1]))
    else:
        out /= xp.asarray(divisor, dtype=xp.float32)
    return out
