"""Max and average pooling of already padded inputs (``max_pool2d`` / ``avg_pool2d`` semantics).

Both reductions are separable: a pass along ``x`` over ``kw`` strided slices, then along ``y``
over ``kh`` -- ``kh + kw`` vectorised passes instead of ``kh * kw``. ``maximum`` propagates NaN
like PyTorch; the average sums in float32 and divides by ``kh * kw`` (``count_include_pad``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from featuremap._typing import Array
from featuremap.engine.geometry import Pair, output_length
from featuremap.engine.kernels._namespace import array_namespace
from featuremap.errors import InputError

__all__ = ["avg_pool_valid", "max_pool_valid"]


def _reduce(x: Array, kernel: Pair, stride: Pair, name: str, combine: Callable[..., Any]) -> Array:
    xp = array_namespace(x)
    if x.ndim < 2:
        raise InputError(f"{name} needs an array of shape (..., H, W), got shape {x.shape}")
    (kh, kw), (sy, sx) = kernel, stride
    out_h = output_length(x.shape[-2], kh, sy, 1, 0, 0, axis="y")
    out_w = output_length(x.shape[-1], kw, sx, 1, 0, 0, axis="x")
    x = xp.asarray(x, dtype=xp.float32)
    # Along x first, on the rows the y pass will read; the first slice is copied, the rest folded in.
    rows = slice(0, (out_h - 1) * sy + kh)
    across = x[..., rows, 0 : (out_w - 1) * sx + 1 : sx].copy()
    for t in range(1, kw):
        combine(across, x[..., rows, t : t + (out_w - 1) * sx + 1 : sx], out=across)
    out = across[..., 0 : (out_h - 1) * sy + 1 : sy, :].copy()
    for t in range(1, kh):
        combine(out, across[..., t : t + (out_h - 1) * sy + 1 : sy, :], out=out)
    return out


def max_pool_valid(x: Array, kernel: Pair, stride: Pair) -> Array:
    """Maximum over each ``kernel`` window of the padded ``x (..., H, W)`` at ``stride``.

    Pad with ``-inf`` beforehand for PyTorch's padding semantics.
    """
    return _reduce(x, kernel, stride, "max_pool", array_namespace(x).maximum)


def avg_pool_valid(x: Array, kernel: Pair, stride: Pair) -> Array:
    """Mean over each full ``kernel`` window of the padded ``x (..., H, W)`` at ``stride``.

    Pad with zeros beforehand for ``count_include_pad=True`` semantics.
    """
    xp = array_namespace(x)
    out = _reduce(x, kernel, stride, "avg_pool", xp.add)
    out *= xp.float32(1.0 / (kernel[0] * kernel[1]))
    return out
