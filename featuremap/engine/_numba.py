"""Compiling featuremap's numba loops (imports numba: only imported by the modules that hold such
loops, which are imported on first use).

Loops are compiled from their module-level functions with ``cache=True``, so numba's on-disk
cache (keyed on the defining file) serves every later process; where no cache directory is
writable (a read-only install, a worker without a home) numba refuses ``cache=True`` and the
loop is compiled in each process instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numba

__all__ = ["compile_loop"]

_LOG = logging.getLogger(__name__)


def compile_loop(loop: Callable[..., None], signature: str) -> Any:
    """``loop`` compiled for ``signature`` (no GIL held, no bounds checks), cached on disk where a
    cache directory is writable."""
    try:
        return numba.njit(signature, cache=True, nogil=True, boundscheck=False)(loop)
    except RuntimeError as error:  # "no locator available": nowhere to write the cache
        _LOG.debug("numba cache unavailable (%s): compiling in this process", error)
        return numba.njit(signature, cache=False, nogil=True, boundscheck=False)(loop)
