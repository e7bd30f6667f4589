"""The one place featuremap reaches into Zarr's private API.

``zarr.core.sync.sync`` runs a coroutine on Zarr's own event-loop thread, and
``Array.async_array`` is the asynchronous array behind a synchronous one. Together they read
several chunks in one round trip through that loop (:func:`read_selections`), which the public
API cannot: one ``array[...]`` call per chunk costs a loop round trip each, more than decoding a
small chunk. ``sync`` also runs the one store write of :func:`write_whole_object`.
``tests/io/test_zarr_private.py`` fails loudly when either moves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync  # private: see the module docstring

__all__ = ["read_selections", "write_whole_object"]


def read_selections(array: zarr.Array[Any], selections: Sequence[tuple[slice, ...]]) -> list[Any]:
    """Each selection of ``array`` decoded into its own array, all read concurrently in one call
    into Zarr's event loop; a selection that fails gives its exception in its place."""

    async def read_all() -> list[Any]:
        reads = (array.async_array.getitem(selection) for selection in selections)
        return await asyncio.gather(*reads, return_exceptions=True)

    results: list[Any] = sync(read_all())
    return results


def write_whole_object(
    array: zarr.Array[Any], selection: tuple[slice, ...], values: np.ndarray
) -> bool:
    """Write ``values`` as the one whole stored object ``selection`` covers -- a shard, or a
    chunk of an array without shards -- encoded here into one buffer; ``False`` (nothing
    written) unless the array is laid out as featuremap's uncompressed outputs are (Zarr v3,
    ``bytes`` little-endian + ``crc32c``) and ``selection`` is exactly one object inside it.

    Zarr's sharding codec writes a shard as a partial update, even a whole one: it fills a new
    array with the fill value for every inner chunk, copies the chunk's values into it, copies
    them again to append the checksum (``np.append``, a slow byte-wise copy) and once more to
    join the chunks -- four passes over a 64 MiB block (~40 ms, as long as the file write)
    before the write. Here each chunk's bytes are copied once, straight into the object, its
    crc32c computed in place, a shard's index after them: the layout Zarr's specification
    defines (sharding with ``index_location`` ``end`` and the same codecs for the index),
    inner chunks in C order, the order being the writer's choice.
    ``tests/io/test_zarr_private.py`` reads such objects back through Zarr.
    """
    layout = _uncompressed_layout(array)
    if layout is None or not _whole_object(array, selection):
        return False
    shape = tuple(s.stop - s.start for s in selection)
    values = np.asarray(values, dtype=array.dtype)
    inner = shape if isinstance(layout, str) else layout  # "chunks": the object is the chunk
    per_object = tuple(size // chunk for size, chunk in zip(shape, inner, strict=True))
    chunk_bytes = int(np.prod(inner)) * values.itemsize
    data_bytes = int(np.prod(per_object)) * (chunk_bytes + 4)
    index = np.empty((*per_object, 2), dtype="<u8")
    index_bytes = 0 if layout == "chunks" else index.nbytes + 4
    encoded = np.empty(data_bytes + index_bytes, dtype=np.uint8)
    for number, coords in enumerate(np.ndindex(*per_object)):
        chunk = values[tuple(slice(c * n, (c + 1) * n) for c, n in zip(coords, inner, strict=True))]
        start = number * (chunk_bytes + 4)
        np.copyto(encoded[start : start + chunk_bytes].view(values.dtype).reshape(inner), chunk)
        _put_crc32c(encoded, start, chunk_bytes)
        index[coords] = (start, chunk_bytes + 4)
    if index_bytes:
        encoded[data_bytes : data_bytes + index.nbytes] = index.reshape(-1).view(np.uint8)
        _put_crc32c(encoded, data_bytes, index.nbytes)
    key = array.metadata.encode_chunk_key(
        tuple(s.start // size for s, size in zip(selection, shape, strict=True))
    )
    buffer = default_buffer_prototype().buffer.from_array_like(encoded)
    sync((array.async_array.store_path / key).set(buffer))
    return True


def _put_crc32c(encoded: np.ndarray, start: int, length: int) -> None:
    """The crc32c of ``encoded[start:start + length]``, little-endian, in the 4 bytes after."""
    checksum = google_crc32c.value(encoded[start : start + length])
    encoded[start + length : start + length + 4] = np.array([checksum], "<u4").view(np.uint8)


#: ``bytes`` little-endian + ``crc32c``, as their JSON (the crc32c codec's class may vary).
_CHECKSUMMED = [BytesCodec(endian="little").to_dict(), Crc32cCodec().to_dict()]


def _uncompressed_layout(array: zarr.Array[Any]) -> tuple[int, ...] | str | None:
    """How a Zarr v3 array of uncompressed, checksummed chunks stores them: ``"chunks"``
    (one object each) or, sharded with the index at the end, the inner chunk shape; ``None``
    for any other layout (compressed, another checksum or byte order, Zarr v2)."""
    metadata = array.metadata
    dtype = np.dtype(array.dtype)
    if metadata.zarr_format != 3 or dtype.newbyteorder("<") != dtype.newbyteorder("="):
        return None
    codecs = [codec.to_dict() for codec in metadata.codecs]
    if codecs == _CHECKSUMMED:
        return "chunks"
    sharding = metadata.codecs[0]
    if (
        len(codecs) == 1
        and isinstance(sharding, ShardingCodec)
        and sharding.index_location.value == "end"
        and [codec.to_dict() for codec in sharding.codecs] == _CHECKSUMMED
        and [codec.to_dict() for codec in sharding.index_codecs] == _CHECKSUMMED
    ):
        return tuple(sharding.chunk_shape)
    return None


def _whole_object(array: zarr.Array[Any], selection: tuple[slice, ...]) -> bool:
    """Whether ``selection`` is exactly one stored object (shard, else chunk) of ``array``,
    inside the array."""
    sizes = array.shards or array.chunks
    if len(selection) != len(sizes):
        return False
    return all(
        s.step in (None, 1) and s.start % size == 0 and s.stop - s.start == size and s.stop <= n
        for s, size, n in zip(selection, sizes, array.shape, strict=True)
    )
