"""Which device a block's array lives on, and the way back to the host.

Pure array functions (no Dask): a CuPy array is recognised by its type's module, so CuPy is never
imported here. Moving a block *to* a GPU depends on the worker (:mod:`featuremap.cluster.devices`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from featuremap._typing import Array

__all__ = ["array_device", "is_cupy", "to_host"]


def is_cupy(block: object) -> bool:
    """Whether ``block`` is a CuPy array (told from its type, without importing CuPy)."""
    return type(block).__module__.partition(".")[0] == "cupy"


def array_device(block: object) -> str:
    """``"gpu"`` for a CuPy array, ``"cpu"`` for anything else (what a block was computed on)."""
    return "gpu" if is_cupy(block) else "cpu"


def to_host(block: Array) -> np.ndarray:
    """``block`` as a NumPy array; a CuPy array is copied back from the GPU."""
    if is_cupy(block):
        device_block: Any = block  # a CuPy array
        return np.asarray(device_block.get())
    return np.asarray(block)
