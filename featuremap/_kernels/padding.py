"""Padding of the last two axes with PyTorch's mode names (DESIGN section 1).

torch ``reflect`` = NumPy ``reflect`` (edge pixel not repeated), torch ``replicate`` = NumPy
``edge``, torch ``circular`` = NumPy ``wrap``; ``constant`` pads with ``value`` (``-inf`` for max
pooling) and ``zeros`` with 0.
"""

from __future__ import annotations

import operator
from typing import Any

from featuremap._kernels._namespace import array_namespace
from featuremap.errors import InputError, describe

__all__ = ["PAD_MODES", "pad"]

PAD_MODES: tuple[str, ...] = ("zeros", "reflect", "replicate", "circular", "constant")

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


def _check_fits(mode: str, widths: tuple[tuple[int, int], tuple[int, int]], shape: tuple[int, ...]) -> None:
    """PyTorch refuses reflect padding >= the size and circular padding > the size; so do we."""
    for (lo, hi), size, axis in zip(widths, shape[-2:], ("y", "x")):
        limit = size - 1 if mode == "reflect" else size
        if max(lo, hi) > limit:
            raise InputError(
                f"{mode} padding ({lo}, {hi}) along {axis} needs an input of more than "
                f"{max(lo, hi) if mode == 'reflect' else max(lo, hi) - 1} pixels, got {size}; "
                "use less padding, a larger input or padding_mode 'zeros'/'replicate'"
            )


def pad(x: Any, padding: Any, mode: str, value: float = 0.0) -> Any:
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
    if mode not in PAD_MODES:
        raise InputError(f"padding mode must be one of {', '.join(PAD_MODES)}, got {describe(mode)}")
    widths = _parse_widths(padding)
    if x.ndim < 2:
        raise InputError(f"pad needs an array with at least 2 dimensions (y, x), got shape {x.shape}")
    if widths == ((0, 0), (0, 0)):
        return x
    xp = array_namespace(x)
    pad_width = ((0, 0),) * (x.ndim - 2) + widths
    if mode in ("zeros", "constant"):
        fill = value if mode == "constant" else 0
        return xp.pad(x, pad_width, mode="constant", constant_values=fill)
    _check_fits(mode, widths, x.shape)
    return xp.pad(x, pad_width, mode=_NUMPY_MODES[mode])
