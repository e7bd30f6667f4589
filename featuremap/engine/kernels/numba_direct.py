"""Optional direct convolution compiled by numba (the ``fast`` extra), for depthwise-like layers.

A grouped convolution with few filters per group (a depthwise 3x3: every output channel reads
one input channel) is a poor GEMM: each group's product has one row, a GEMV at memory speed,
after a patch copy nine times the input's size. A direct loop reads each input row from cache
for every tap and never copies a patch. On the 2-core development machine (AMD EPYC Zen 5,
AVX-512, numba 0.68, 2026-12-05), depthwise 3x3 on 64 x 256^2 with padding 1, one core: this
loop 3.0-3.4 ms; the GEMM path 6-13 ms (its padded copy included); torch 2.13's call 24-28 ms.
On two threads 2.2-2.3 ms against torch's 2.2-18 ms (which depends on the state of its
allocator). The loop is
:mod:`._direct_numba`'s; it handles zero padding itself (no padded copy) and starts each row from
the bias.

Like torch's path (:mod:`.onednn`), numba is never required and never imported until the cost
model (:mod:`.cost`) takes this method -- once the time it would have saved pays for the
import (:class:`._optional.OptionalModule`) -- and where it is absent or fails to import or
compile, the other paths run. A direct loop propagates NaN/Inf exactly to the windows that
hold them, as the GEMM does, so no finiteness check is needed. Threads: the (image, filter)
pairs are split into tiles that :func:`._threads.run_tiles` hands to the task's threads (the
loop holds no GIL).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from featuremap._typing import Array
from featuremap.engine.kernels._optional import OptionalModule
from featuremap.engine.kernels._threads import blas_threads, run_tiles

__all__ = ["IMPORT_SECONDS", "available", "numba_conv", "usable", "worth_importing"]

_LOG = logging.getLogger(__name__)

#: What importing numba and loading the cached loop cost a process: 0.19-0.30 s for ``import
#: numba`` and 0.26 s to load the compiled loop from numba's cache on the development machine.
IMPORT_SECONDS = 0.5
_NUMBA = OptionalModule("numba", IMPORT_SECONDS)
#: Tiles per thread: handed out one at a time, so a thread slowed by other work takes fewer.
_TILES_PER_THREAD = 4


def available() -> bool:
    """Whether numba can be imported (checked once, without importing it)."""
    return _NUMBA.available()


def worth_importing(saving_seconds: float) -> bool:
    """Whether a call that this path would make ``saving_seconds`` faster should take it: always
    once numba is imported in this process, otherwise when the savings given up reach
    :data:`IMPORT_SECONDS`."""
    return _NUMBA.worth_importing(saving_seconds)


@functools.cache
def _loop() -> Callable[..., None] | None:
    """The compiled loop, or ``None`` where numba fails to import or compile it."""
    try:
        from featuremap.engine.kernels._direct_numba import direct_rows
    except Exception as error:  # noqa: BLE001 -- a broken numba: the other paths run
        _LOG.debug("numba direct convolution unavailable (%s)", error)
        return None
    loop: Callable[..., None] = direct_rows
    return loop


def usable() -> bool:
    """Whether the compiled loop runs in this process (imports numba and loads the loop)."""
    return available() and _loop() is not None


def numba_conv(
    x: Array,
    weight: Array,
    bias: Array | None,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    padding: tuple[int, int],
    out: Array,
) -> None:
    """Cross-correlation of ``x (N, C, H, W)`` with ``padding = (top, left)`` zeros before it
    (the rest implied by ``out``'s shape) into ``out (N, J, H_out, W_out)``, plus ``bias``;
    float32 NumPy arrays, already validated, :func:`usable` already asked."""
    loop = _loop()
    assert loop is not None  # the caller asked usable()
    images = np.ascontiguousarray(x, dtype=np.float32)
    weights = np.ascontiguousarray(weight, dtype=np.float32)
    offsets = (
        np.zeros(weight.shape[0], np.float32)
        if bias is None
        else np.ascontiguousarray(bias, dtype=np.float32)
    )
    pairs = images.shape[0] * weights.shape[0]
    tile = max(1, -(-pairs // (_TILES_PER_THREAD * blas_threads())))
    arguments: tuple[Any, ...] = (images, weights, offsets, out, groups, *stride, *dilation)

    def work(first: int) -> None:
        loop(*arguments, *padding, first, min(pairs, first + tile))

    run_tiles(work, range(0, pairs, tile))
