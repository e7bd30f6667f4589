"""Casting a computed block to the stored dtype; float32 -> float16 fast when numba is installed.

NumPy's float32 -> float16 ``astype`` is a scalar loop (2.5-3 ns a value on Zen 4 with NumPy
2.4), although x86 CPUs since 2012 convert eight or sixteen values an instruction (F16C /
AVX-512 ``vcvtps2ph``). With the ``fast`` extra (numba), :func:`to_float16` runs a loop whose
body is LLVM's ``fptrunc float to half``, which LLVM vectorises to that instruction for the
host CPU (0.2 ns a value measured). ``fptrunc`` is IEEE-754 round-to-nearest-even, as NumPy's
cast, so the results are bit-identical to ``astype(np.float16)`` for every value but NaN, whose
payload may differ (a NaN stays a NaN).

numba is imported on the first float16 cast only (a float32 job never pays for it); when it is
absent or fails to import or compile, NumPy's ``astype`` is used. Compiled code is cached on
disk (``cache=True``): next to this module or in numba's per-user cache directory
(``NUMBA_CACHE_DIR``); where neither is writable (a read-only install, a worker without a home)
the loop is compiled in each process instead.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "cast_to",
    "fast_float16_available",
    "float16_row_sums",
    "to_float16",
    "to_float32",
    "widen_into",
]

_LOG = logging.getLogger(__name__)

#: Below this many values NumPy's cast is as fast as the compiled one's call overhead.
_MIN_FAST_VALUES = 4096

_Kernel = Callable[[np.ndarray, np.ndarray], None]


def _compile() -> _Kernel | None:
    """The compiled loop (float32 values -> float16 bit patterns), checked, or ``None``."""
    try:
        from featuremap.engine._float16_numba import half_bits_into

        probe = np.zeros(1, dtype=np.uint16)
        half_bits_into(np.ones(1, dtype=np.float32), probe)  # compiled (or loaded) by now
    except Exception as error:  # noqa: BLE001 -- an absent or broken numba: NumPy's cast
        _LOG.debug("compiled float16 cast unavailable (%s): using NumPy's", error)
        return None
    kernel: _Kernel = half_bits_into
    return kernel if int(probe[0]) == 0x3C00 else None  # 1.0 in float16


@functools.cache
def _kernel() -> _Kernel | None:
    return _compile()


@functools.cache
def _widen_kernel() -> _Kernel | None:
    """The compiled float16 -> float32 loop, when the narrowing one works (same module)."""
    if _kernel() is None:
        return None
    from featuremap.engine._float16_numba import widen_into

    kernel: _Kernel = widen_into
    return kernel


@functools.cache
def _row_sums_kernel() -> Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None:
    """The compiled float16 row statistics, when the narrowing loop works (same module)."""
    if _kernel() is None:
        return None
    from featuremap.engine._float16_numba import half_row_sums

    kernel: Callable[[np.ndarray, np.ndarray, np.ndarray], None] = half_row_sums
    return kernel


def fast_float16_available() -> bool:
    """Whether :func:`to_float16` runs the compiled cast (numba installed and working)."""
    return _kernel() is not None


def to_float16(values: np.ndarray) -> np.ndarray:
    """``values`` (float32) as float16, bit-identical to ``values.astype(np.float16)`` except
    NaN payloads; through the compiled cast when numba is there, else NumPy's."""
    values = np.asarray(values)
    kernel = _kernel() if values.size >= _MIN_FAST_VALUES else None
    if kernel is None or values.dtype != np.float32:
        return values.astype(np.float16)
    contiguous = np.ascontiguousarray(values)
    out = np.empty(values.shape, dtype=np.float16)
    kernel(contiguous.reshape(-1), out.reshape(-1).view(np.uint16))
    return out


def to_float32(values: np.ndarray) -> np.ndarray:
    """float16 ``values`` as float32 (exact: NumPy's ``astype`` is a scalar loop here too, the
    compiled one ``vcvtph2ps``); anything else through ``astype(np.float32, copy=False)``."""
    values = np.asarray(values)
    if values.dtype != np.float16:  # a float32 job never loads numba (nor scipy, which it loads)
        return values.astype(np.float32, copy=False)
    out = np.empty(values.shape, dtype=np.float32)
    widen_into(np.ascontiguousarray(values).reshape(-1), out.reshape(-1))
    return out


def widen_into(values: np.ndarray, out: np.ndarray) -> None:
    """float16 ``values`` (1-D, contiguous) into the float32 array ``out`` of the same size:
    exact, through the compiled widening when there."""
    kernel = _widen_kernel() if values.size >= _MIN_FAST_VALUES else None
    if kernel is None:
        np.copyto(out, values)
    else:
        kernel(values.view(np.uint16), out)


def float16_row_sums(rows: np.ndarray, shift: np.ndarray) -> np.ndarray | None:
    """Per row of the float16 ``rows`` (2-D): the float64 sums of the values minus
    ``shift[row]`` and of their squares, the minimum and the maximum (``(4, rows)``), in one
    compiled pass; ``None`` without the compiled loops (NumPy's passes are the caller's). A row
    holding NaN or inf has sums that are not finite."""
    kernel = _row_sums_kernel() if rows.size >= _MIN_FAST_VALUES else None
    if kernel is None:
        return None
    out = np.empty((4, rows.shape[0]))
    kernel(np.ascontiguousarray(rows).view(np.uint16), shift, out)
    return out


def cast_to(values: np.ndarray, dtype: Any) -> np.ndarray:
    """``values`` in ``dtype`` (no copy when it already is); float32 -> float16 through
    :func:`to_float16`."""
    target = np.dtype(dtype)
    if values.dtype == target:
        return values
    if target == np.float16 and values.dtype == np.float32 and isinstance(values, np.ndarray):
        return to_float16(values)
    return values.astype(target)
