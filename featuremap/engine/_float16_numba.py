"""The compiled float32 -> float16 loop of :mod:`featuremap.engine.cast` (imports numba: only
imported by it, on the first float16 cast).

The loop's body is LLVM's ``fptrunc float to half`` (round to nearest even, IEEE-754), which
LLVM vectorises to F16C / AVX-512 ``vcvtps2ph`` for the host CPU; numba has no float16 scalar,
so the loop writes the halves' bit patterns into a ``uint16`` view of the output. Both are
module-level functions so that numba's on-disk cache serves every later process
(:func:`.._numba.compile_loop`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.extending import intrinsic

from featuremap.engine._numba import compile_loop

__all__ = ["half_bits_into", "widen_into"]

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


def _widen_loop(bits: np.ndarray, out: np.ndarray) -> None:
    for index in range(bits.size):
        out[index] = _widen(bits[index])  # type: ignore[call-arg]  # typingctx: numba


def _loop(values: np.ndarray, out: np.ndarray) -> None:
    for index in range(values.size):
        out[index] = _half_bits(values[index])  # type: ignore[call-arg]  # typingctx: numba


#: ``half_bits_into(values, out)``: float32 ``values`` (1-D, contiguous) into the float16 bit
#: patterns ``out`` (uint16, same size).
half_bits_into = compile_loop(_loop, _SIGNATURE)
#: ``widen_into(bits, out)``: float16 bit patterns (uint16, 1-D, contiguous) into their float32
#: values ``out`` (``vcvtph2ps``).
widen_into = compile_loop(_widen_loop, "void(uint16[::1], float32[::1])")
