"""Padding of the trailing spatial axes with PyTorch's mode names (DESIGN section 1).

torch ``reflect`` = NumPy ``reflect`` (edge pixel not repeated), torch ``replicate`` = NumPy
``edge``, torch ``circular`` = NumPy ``wrap``; ``constant`` pads with ``value`` (``-inf`` for max
pooling) and ``zeros`` with 0. The mode may differ per axis (``circular`` along ``x`` only).
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


def _parse_widths(padding: Any) -> tuple[tuple[int, int], ...]:
    try:
        widths = tuple((_width(lo), _width(hi)) for lo, hi in padding)
    except (TypeError, ValueError):
        widths = ()
    if not widths or min(min(pair) for pair in widths) < 0:
        raise InputError(
            "padding must be one (lo, hi) pair of non-negative integers per spatial axis, "
            f"got {describe(padding)}"
        )
    return widths


def _modes(mode: Any, ndim: int) -> tuple[str, ...]:
    modes = (mode,) * ndim if isinstance(mode, str) else tuple(mode)
    if len(modes) != ndim or any(m not in BORDER_MODES for m in modes):
        raise InputError(
            f"padding mode must be one of {', '.join(BORDER_MODES)} (or one per axis), "
            f"got {describe(mode)}"
        )
    return modes


def check_fits(mode: Any, widths: Sequence[tuple[int, int]], shape: Sequence[int]) -> None:
    """PyTorch's limits on the trailing axes of ``shape`` (one per pair of ``widths``): reflect
    padding < size, circular <= size. ``mode``: one mode, or one per axis.

    Layers check this when they resolve their geometry, before a job writes anything; :func:`pad`
    checks it again for direct callers.
    """
    ndim = len(widths)
    names = ("z", "y", "x")[-ndim:] if ndim <= 3 else tuple(f"axis {i}" for i in range(ndim))
    modes = _modes(mode, ndim)
    for (lo, hi), size, axis, axis_mode in zip(widths, shape[-ndim:], names, modes, strict=True):
        width = max(lo, hi)
        if axis_mode == "reflect" and width >= size:
            raise InputError(
                f"reflect padding {width} along {axis} must be smaller than the input size {size}; "
                "use less padding, a larger input or padding_mode 'replicate'/'zeros'"
            )
        if axis_mode == "circular" and width > size:
            raise InputError(
                f"circular padding {width} along {axis} exceeds the input size {size}; "
                "use less padding or a larger input"
            )


def pad(x: Array, padding: Any, mode: Any, value: float = 0.0) -> Array:
    """Pad the trailing spatial axes of ``x`` (one per pair of ``padding``).

    Parameters
    ----------
    x : array
        NumPy or CuPy array with at least ``len(padding)`` dimensions.
    padding : sequence of (int, int)
        ``(lo, hi)`` per trailing axis, non-negative: ``((top, bottom), (left, right))`` in 2-D.
    mode : {"zeros", "reflect", "replicate", "circular", "constant"} or one per axis
        PyTorch meanings; ``"constant"`` fills with ``value``.
    value : float
        Fill value of ``"constant"``.

    Returns
    -------
    array
        ``x`` itself when there is no padding, else a new array of the same dtype.
    """
    widths = _parse_widths(padding)
    modes = _modes(mode, len(widths))
    if x.ndim < len(widths):
        raise InputError(
            f"pad needs an array with at least {len(widths)} dimensions, got shape {x.shape}"
        )
    if not any(lo or hi for lo, hi in widths):
        return x
    check_fits(modes, widths, x.shape)
    xp = array_namespace(x)
    lead = ((0, 0),) * (x.ndim - len(widths))
    if len(set(modes)) == 1:
        return _pad_all(xp, x, lead + widths, modes[0], value)
    for axis, (pair, axis_mode) in enumerate(zip(widths, modes, strict=True)):
        pads = [(0, 0)] * len(widths)
        pads[axis] = pair
        x = _pad_all(xp, x, lead + tuple(pads), axis_mode, value)
    return x


def _pad_all(
    xp: Any, x: Array, pad_width: tuple[tuple[int, int], ...], mode: str, value: float
) -> Array:
    if mode in ("zeros", "constant"):
        fill = value if mode == "constant" else 0
        return xp.pad(x, pad_width, mode="constant", constant_values=fill)
    return xp.pad(x, pad_width, mode=_NUMPY_MODES[mode])
