"""Whether this host can run the GPU tests: CuPy imports and sees a CUDA device."""

from __future__ import annotations

import functools


@functools.cache
def cuda_device_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
    except Exception:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False
