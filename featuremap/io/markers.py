"""Done-markers that scale: one bit per block, packed, written by one writer.

A job's blocks are numbered in C order over the block grid; ``_job/done`` is a ``uint8`` array
holding one bit per block (``numpy.packbits``, big-endian bit order), chunked so that one chunk
covers :data:`BLOCKS_PER_CHUNK` blocks. A million-block job has 16 marker chunks, a 10^8-block job
1526: ``status`` and ``--resume`` read them in seconds, and creating them costs nothing (a chunk
that was never written reads as zeros: no block of it is done).

Only the process that follows the job writes markers (:class:`MarkerWriter`): it sets a block's
bit once the block's task has returned -- the block's data is on disk -- and flushes the touched
chunks every :data:`FLUSH_SECONDS` and at the end. A writer killed in between loses at most the
last second of bits; ``--resume`` recomputes those blocks, which rewrites the same bytes. Each
flush first asks ``check`` (the job's fencing check), so a job that lost its store never writes
a marker into the store of the job that replaced it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import zarr

from featuremap.io.formats import DEFAULT_FORMAT, StoreFormat

__all__ = [
    "BLOCKS_PER_CHUNK",
    "FLUSH_SECONDS",
    "MarkerWriter",
    "block_number",
    "chunk_bits",
    "count_marked",
    "create_markers",
    "done_numbers",
    "marker_chunk_count",
]

#: Blocks per marker chunk (8 KiB of bits).
BLOCKS_PER_CHUNK = 65536
_BYTES_PER_CHUNK = BLOCKS_PER_CHUNK // 8
#: How often a :class:`MarkerWriter` flushes the bits set since its last flush.
FLUSH_SECONDS = 1.0


def block_number(block: Sequence[int], grid_shape: Sequence[int]) -> int:
    """A block's number: its position in C order over the block grid."""
    return int(np.ravel_multi_index(tuple(block), tuple(grid_shape)))


def marker_chunk_count(blocks_total: int) -> int:
    return max(1, math.ceil(blocks_total / BLOCKS_PER_CHUNK))


def create_markers(
    group: zarr.Group, path: str, blocks_total: int, store_format: StoreFormat = DEFAULT_FORMAT
) -> zarr.Array[Any]:
    """The empty marker array of ``blocks_total`` blocks (metadata only: no chunk is written)."""
    length = max(1, math.ceil(blocks_total / 8))
    return group.create_array(
        path,
        shape=(length,),
        chunks=(min(length, _BYTES_PER_CHUNK),),
        dtype="uint8",
        fill_value=0,
        overwrite=True,
        **store_format.naming(["done_bits"]),
    )


def chunk_bits(markers: zarr.Array[Any], chunk: int, blocks_total: int) -> np.ndarray:
    """The done bits of marker chunk ``chunk`` as booleans (one per block it covers)."""
    start = chunk * _BYTES_PER_CHUNK
    packed = np.asarray(markers[start : start + _BYTES_PER_CHUNK], dtype=np.uint8)
    bits = np.unpackbits(packed).astype(bool)
    first = chunk * BLOCKS_PER_CHUNK
    return bits[: max(0, min(BLOCKS_PER_CHUNK, blocks_total - first))]


def _read_or_empty(markers: zarr.Array[Any], chunk: int, blocks_total: int) -> np.ndarray:
    """A marker chunk's bits; an undecodable (damaged) one starts empty: its blocks are redone."""
    try:
        return chunk_bits(markers, chunk, blocks_total)
    except Exception:  # noqa: BLE001 -- any decode error of a damaged chunk
        first = chunk * BLOCKS_PER_CHUNK
        return np.zeros(max(0, min(BLOCKS_PER_CHUNK, blocks_total - first)), dtype=bool)


def done_numbers(markers: zarr.Array[Any], blocks_total: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(first block number, done bits)`` per marker chunk, one chunk in memory at a time; a
    damaged marker chunk counts as not done (its blocks are recomputed, ``verify`` names it)."""
    for chunk in range(marker_chunk_count(blocks_total)):
        yield chunk * BLOCKS_PER_CHUNK, _read_or_empty(markers, chunk, blocks_total)


def count_marked(markers: zarr.Array[Any], chunks: Iterable[int], blocks_total: int) -> int:
    """Done bits set in marker chunks ``chunks`` (those on disk: the others hold none); a chunk
    past the grid is not counted, a damaged one counts none."""
    last = marker_chunk_count(blocks_total)
    return sum(
        int(np.count_nonzero(_read_or_empty(markers, chunk, blocks_total)))
        for chunk in set(chunks)
        if chunk < last
    )


class MarkerWriter:
    """Sets done bits as blocks finish and flushes them in packed chunks (the job's one writer).

    ``check()`` runs before every flush and raises when the job may no longer write;
    ``before_flush()`` then saves what must be on disk before the bits are (the display
    statistics of the blocks marked).
    """

    def __init__(
        self,
        markers: zarr.Array[Any],
        blocks_total: int,
        check: Callable[[], None],
        before_flush: Callable[[], None] | None = None,
    ) -> None:
        self.markers, self.blocks_total, self.check = markers, blocks_total, check
        self.before_flush = before_flush
        self._open: dict[int, np.ndarray] = {}  # chunk -> its bits (loaded when first touched)
        self._dirty: set[int] = set()
        self._last_flush = time.monotonic()

    def mark(self, number: int, done: bool = True) -> None:
        """Record block ``number`` as done (or, ``done=False``, as not done: ``verify --repair``);
        flush when :data:`FLUSH_SECONDS` have passed."""
        chunk, offset = divmod(number, BLOCKS_PER_CHUNK)
        bits = self._open.get(chunk)
        if bits is None:
            bits = self._open[chunk] = _read_or_empty(self.markers, chunk, self.blocks_total)
        bits[offset] = done
        self._dirty.add(chunk)
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write every chunk with bits set since the last flush; forget the complete ones."""
        if self._dirty:
            self.check()
            if self.before_flush is not None:
                self.before_flush()
        for chunk in sorted(self._dirty):
            bits = self._open[chunk]
            start = chunk * _BYTES_PER_CHUNK
            packed = np.packbits(bits)
            self.markers[start : start + packed.size] = packed
            if bits.all():  # nothing more will change in it: keep memory to the open chunks
                del self._open[chunk]
        self._dirty.clear()
        self._last_flush = time.monotonic()
