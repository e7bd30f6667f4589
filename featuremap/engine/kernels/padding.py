"""Padding of the last two axes with PyTorch's mode names (DESIGN section 1).

torch ``reflect`` = NumPy ``reflect`` (edge pixel not repeated), torch ``replicate`` = NumPy
``edge``, torch ``circular`` = NumPy ``wrap``; ``constant`` pads with ``value`` (``-inf`` for max
pooling) and ``zeros`` with 0.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from featuremap._typing import Array
from featuremap._vocabulary import BORDER_MODES
from featuremap.engine.kernels._namespace import array_namespace
from featuremap.errors import InputError, describe

__all__ = ["check_fits", "pad"]

_NUMPY_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _width(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a padding width")
    return operator.index(value)


def _parse_widths(padding: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    try:
        (top, bottom), (left, right) = padding
        widths = ((_width(top), _width(bottom)), (_width(left), _width(right)))
    except (TypeError, ValueError):
        widths = None
    if widths is None or min(min(pair) for pair in widths) < 0:
        raise InputError(
            f"padding must be ((top, bottom), (left, right)) of non-negative integers, got {describe(padding)}"
        )
    return widths


def check_fits(mode: str, widths: Sequence[tuple[int, int]], shape: Sequence[int]) -> None:
    """PyTorch's limits on the last two axes of ``shape``: reflect padding < size, circular <= size.

    Layers check this when they resolve their geometry, before a job writes anything; :func:`pad`
    checks it again for direct callers.
    """
    for (lo, hi), size, axis in zip(widths, shape[-2:], "yx", strict=False):
        width = max(lo, hi)
        if mode == "reflect" and width >= size:
            raise InputError(
                f"reflect padding {width} along {axis} must be smaller than the input size {size}; "
                "use less padding, a larger input or padding_mode 'replicate'/'zeros'"
            )
        if mode == "circular" and width > size:
            raise InputError(
                f"circular padding {width} along {axis} exceeds the input size {size}; "
                "use less padding or a larger input"
            )


def pad(x: Array, padding: Any, mode: str, value: float = 0.0) -> Array:
    """Pad the last two axes of ``x``.

    Parameters
    ----------
    x : array
        NumPy or CuPy array with at least two dimensions.
    padding : ((int, int), (int, int))
        ``((top, bottom), (left, right))``, non-negative.
    mode : {"zeros", "reflect", "replicate", "circular", "constant"}
        PyTorch meanings; ``"constant"`` fills with ``value``.
    value : float
        Fill value of ``"constant"``.

    Returns
    -------
    array
        ``x`` itself when there is no padding, else a new array of the same dtype.
    """
    if mode not in BORDER_MODES:
        raise InputError(
            f"padding mode must be one of {', '.join(BORDER_MODES)}, got {describe(mode)}"
        )
    widths = _parse_widths(padding)
    if x.ndim < 2:
        raise InputError(
            f"pad needs an array with at least 2 dimensions (y, x), got shape {x.shape}"
        )
    if widths == ((0, 0), (0, 0)):
        return x
    xp = array_namespace(x)
    pad_width = ((0, 0),) * (x.ndim - 2) + widths
    if mode in ("zeros", "constant"):
        fill = value if mode == "constant" else 0
        return xp.pad(x, pad_width, mode="constant", constant_values=fill)
    check_fits(mode, widths, x.shape)
    return xp.pad(x, pad_width, mode=_NUMPY_MODES[mode])
