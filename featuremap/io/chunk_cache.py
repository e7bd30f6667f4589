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

from featuremap.errors import InputError, error_line
from featuremap.io._zarr_private import read_selections
from featuremap.io.chunk_files import read_chunk_files

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
    where = str(array.store_path)
    cached = {
        position: cache.get((session, where, position)) for position in itertools.product(*spans)
    }
    chunks = {position: chunk for position, chunk in cached.items() if chunk is not None}
    missing = [position for position, chunk in cached.items() if chunk is None]
    if missing:
        fresh = _read_chunks(array, missing, chunk_shape)
        for position, chunk in fresh.items():
            cache.put((session, where, position), chunk)
        chunks.update(fresh)
    for position, chunk in chunks.items():
        source, target = [], []
        for start, size, part in zip(position, chunk_shape, index, strict=True):
            low, high = max(part.start, start * size), min(part.stop, (start + 1) * size)
            source.append(slice(low - start * size, high - start * size))
            target.append(slice(low - part.start, high - part.start))
        out[tuple(target)] = chunk[tuple(source)]
    return out


def _read_chunks(
    array: zarr.Array[Any], missing: Sequence[tuple[int, ...]], chunk_shape: tuple[int, ...]
) -> dict[tuple[int, ...], np.ndarray]:
    """The ``missing`` chunks, each decoded into its own array: read from their files where the
    layout allows (:mod:`.chunk_files`), else with one call into Zarr.

    One call, not one per chunk: each call is a round trip through Zarr's event-loop thread,
    which costs more than decoding a small chunk (a trivial block's window touches 9 chunks).
    Reading their bounding box in one selection instead would need a copy per chunk to cut it
    apart (5 ms per 4 MiB chunk, more than its decode).
    """

    def chunk_index(position: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(
            slice(start * size, min((start + 1) * size, extent))
            for start, size, extent in zip(position, chunk_shape, array.shape, strict=True)
        )

    decoded = read_chunk_files(array, missing)  # straight from their files where it can
    if decoded is None:
        decoded = read_selections(array, [chunk_index(position) for position in missing])
    chunks = {}
    for position, chunk in zip(missing, decoded, strict=True):
        if isinstance(chunk, Exception):
            raise _unreadable(array, position, chunk_index(position), chunk) from chunk
        chunks[position] = np.asarray(chunk)
    return chunks


def _unreadable(
    array: zarr.Array[Any],
    position: tuple[int, ...],
    index: tuple[slice, ...],
    error: Exception,
) -> InputError:
    """The error for an input chunk that cannot be read or decoded, naming it by position and
    by the pixels it holds (a shard's inner chunk has no file of its own to name)."""
    where = ", ".join(f"{part.start}:{part.stop}" for part in index)
    # the fix before the cause: a job's failure line keeps only the first 200 characters
    return InputError(
        f"unreadable input chunk {position} [{where}] of {str(array.store_path)!r}: restore it, "
        f"or leave it out with input.region ({error_line(error)})"
    )
