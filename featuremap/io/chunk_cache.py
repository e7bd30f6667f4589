"""Decoded input chunks, kept per worker process so that neighbouring blocks share them.

A block's input window reaches past its own chunk by the stack's halo, and Zarr decodes a whole
chunk for any part of it: read straight from Zarr, every chunk is decoded again by each of the
(up to nine) blocks whose windows touch it -- 6-8x the stored input in the end-to-end benchmark.
:func:`read_region` instead assembles the window from whole decoded chunks kept in a small
least-recently-used cache (:data:`CACHE_BYTES` per process), so a worker that computes
neighbouring blocks decodes their shared chunks once.

Entries are keyed by the job's session (its token) as well as the array and the chunk: a later
job never sees the chunks of an input replaced since. Chunks too large to keep a few of are not
cached; such windows are read straight from Zarr as before.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import zarr

__all__ = ["CACHE_BYTES", "ChunkCache", "read_region"]

#: Decoded input chunks kept per worker process: 16 float32 chunks of 1024^2. Fixed, so a
#: worker's memory does not grow with the image (a row of chunks of a wide image would).
CACHE_BYTES = 64 * 2**20
#: Cache a chunk only when this many fit: a block's window touches up to 9 chunks.
_MIN_ENTRIES = 4


class ChunkCache:
    """A thread-safe LRU of decoded chunks, bounded in bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            chunk = self._entries.get(key)
            if chunk is not None:
                self._entries.move_to_end(key)
            return chunk

    def put(self, key: Hashable, chunk: np.ndarray) -> None:
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = chunk
            self._bytes += chunk.nbytes
            while self._bytes > self.capacity:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes

    @property
    def nbytes(self) -> int:
        return self._bytes


_CACHE = ChunkCache(CACHE_BYTES)


def read_region(
    array: zarr.Array[Any],
    index: Sequence[slice],
    *,
    session: str,
    cache: ChunkCache = _CACHE,
) -> np.ndarray:
    """``array[index]`` for in-bounds, step-1 slices, assembled from whole decoded chunks.

    Each chunk the region touches is taken from ``cache`` or read whole and kept there; the
    region is copied out of them. Arrays whose chunks are too large to keep a few of are read
    directly.
    """
    chunk_shape = tuple(int(size) for size in array.chunks)
    if int(np.prod(chunk_shape)) * array.dtype.itemsize * _MIN_ENTRIES > cache.capacity:
        return np.asarray(array[tuple(index)])
    out = np.empty(tuple(part.stop - part.start for part in index), dtype=array.dtype)
    spans = [
        range(part.start // size, -(-part.stop // size)) if part.stop > part.start else range(0)
        for part, size in zip(index, chunk_shape, strict=True)
    ]
    for chunk_index in itertools.product(*spans):
        chunk = _chunk(array, chunk_index, chunk_shape, session, cache)
        source, target = [], []
        for position, size, part in zip(chunk_index, chunk_shape, index, strict=True):
            low, high = max(part.start, position * size), min(part.stop, (position + 1) * size)
            source.append(slice(low - position * size, high - position * size))
            target.append(slice(low - part.start, high - part.start))
        out[tuple(target)] = chunk[tuple(source)]
    return out


def _chunk(
    array: zarr.Array[Any],
    chunk_index: tuple[int, ...],
    chunk_shape: tuple[int, ...],
    session: str,
    cache: ChunkCache,
) -> np.ndarray:
    key = (session, str(array.store_path), chunk_index)
    chunk = cache.get(key)
    if chunk is None:
        chunk = np.asarray(
            array[
                tuple(
                    slice(position * size, min((position + 1) * size, extent))
                    for position, size, extent in zip(
                        chunk_index, chunk_shape, array.shape, strict=True
                    )
                )
            ]
        )
        cache.put(key, chunk)
    return chunk
