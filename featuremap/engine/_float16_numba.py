"""The compiled float32 -> float16 loop of :mod:`featuremap.engine.cast` (imports numba: only
imported by it, on the first float16 cast).

The loop's body is LLVM's ``fptrunc float to half`` (round to nearest even, IEEE-754), which
LLVM vectorises to F16C / AVX-512 ``vcvtps2ph`` for the host CPU; numba has no float16 scalar,
so the loop writes the halves' bit patterns into a ``uint16`` view of the output. Both are
module-level functions so that numba's on-disk cache serves every later process
(:func:`.._numba.compile_loop`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.extending import intrinsic

from featuremap.engine._numba import compile_loop

__all__ = ["half_bits_into", "half_row_sums", "widen_into"]

_SIGNATURE = "void(float32[::1], uint16[::1])"


@intrinsic
def _half_bits(typingctx: Any, value: Any) -> Any:
    """The float16 bit pattern of a float32 (LLVM ``fptrunc``, then a bit cast to 16 bits)."""
    if value != types.float32:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        half = builder.fptrunc(args[0], ir.HalfType())
        return builder.bitcast(half, ir.IntType(16))

    return types.uint16(types.float32), codegen


@intrinsic
def _widen(typingctx: Any, bits: Any) -> Any:
    """The float32 value of a float16 bit pattern (a bit cast to half, then LLVM ``fpext``:
    exact, as every float16 is a float32)."""
    if bits != types.uint16:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        half = builder.bitcast(args[0], ir.HalfType())
        return builder.fpext(half, ir.FloatType())

    return types.float32(types.uint16), codegen


#: :func:`_widen` as the loops below call it, typed for mypy (which sees an ``intrinsic`` call
#: as one that never returns); numba compiles the same intrinsic.
_widened: Callable[[Any], Any] = _widen  # type: ignore[assignment]


def _widen_loop(bits: np.ndarray, out: np.ndarray) -> None:
    for index in range(bits.size):
        out[index] = _widen(bits[index])  # type: ignore[call-arg]  # typingctx: numba


def _loop(values: np.ndarray, out: np.ndarray) -> None:
    for index in range(values.size):
        out[index] = _half_bits(values[index])  # type: ignore[call-arg]  # typingctx: numba


#: Independent accumulators per row in :func:`_row_sums_loop`: LLVM vectorises the sixteen
#: lanes (one pass at ~0.3 ns a value against NumPy's ~1 ns for widen, min, max and the sums).
_LANES = 16


def _row_sums_loop(bits: np.ndarray, shift: np.ndarray, out: np.ndarray) -> None:
    rows, length = bits.shape
    body = length - length % _LANES
    for row in range(rows):
        offset = shift[row]
        total, squares = np.zeros(_LANES), np.zeros(_LANES)
        low = np.full(_LANES, np.inf, np.float32)
        high = np.full(_LANES, -np.inf, np.float32)
        for start in range(0, body, _LANES):
            for lane in range(_LANES):
                value = _widened(bits[row, start + lane])
                deviation = np.float64(value) - offset
                total[lane] += deviation
                squares[lane] += deviation * deviation
                low[lane] = min(low[lane], value)
                high[lane] = max(high[lane], value)
        row_total, row_squares = total.sum(), squares.sum()
        row_low, row_high = np.float64(low.min()), np.float64(high.max())
        for index in range(body, length):
            last = np.float64(_widened(bits[row, index]))
            row_total += last - offset
            row_squares += (last - offset) * (last - offset)
            row_low, row_high = min(row_low, last), max(row_high, last)
        out[0, row], out[1, row] = row_total, row_squares
        out[2, row], out[3, row] = row_low, row_high


#: ``half_bits_into(values, out)``: float32 ``values`` (1-D, contiguous) into the float16 bit
#: patterns ``out`` (uint16, same size).
half_bits_into = compile_loop(_loop, _SIGNATURE)
#: ``widen_into(bits, out)``: float16 bit patterns (uint16, 1-D, contiguous) into their float32
#: values ``out`` (``vcvtph2ps``).
widen_into = compile_loop(_widen_loop, "void(uint16[::1], float32[::1])")
#: ``half_row_sums(bits, shift, out)``: per row of float16 bit patterns (uint16, 2-D, rows
#: contiguous), the float64 sums of the values minus ``shift[row]`` and of their squares, the
#: minimum and the maximum, into ``out[0..3, row]`` -- one pass; a row holding NaN or inf has
#: sums that are not finite (its minimum and maximum then mean nothing).
half_row_sums = compile_loop(_row_sums_loop, "void(uint16[:, ::1], float64[::1], float64[:, ::1])")
