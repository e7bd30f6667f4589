"""The one place featuremap reaches into Zarr's private API.

``zarr.core.sync.sync`` runs a coroutine on Zarr's own event-loop thread, and
``Array.async_array`` is the asynchronous array behind a synchronous one. Together they read
several chunks in one round trip through that loop (:func:`read_selections`), which the public
API cannot: one ``array[...]`` call per chunk costs a loop round trip each, more than decoding a
small chunk. :func:`write_whole_object` encodes compressed inner chunks with the sharding codec's
own codecs, called synchronously (their private ``_encode_sync``, with the chunk spec of the
private ``_get_chunk_spec``: no hop through the loop and a worker thread per chunk and codec),
and writes the object straight to its file in a local store (atomically, as Zarr's
``LocalStore`` does), elsewhere through ``sync``.
``tests/io/test_zarr_private.py`` fails loudly when any of them moves.
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

from featuremap.io._paths import write_atomically
from featuremap.io.chunk_files import array_folder

__all__ = ["read_selections", "write_whole_object"]

#: A shard index entry for a chunk that is absent (Zarr's sharding specification).
_ABSENT = np.iinfo(np.uint64).max


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
    written) unless the array is laid out as featuremap's outputs are (Zarr v3; a chunk of
    ``bytes`` little-endian + ``crc32c``, or a shard whose index is so encoded at its end) and
    ``selection`` is exactly one object inside it.

    Zarr's sharding codec writes a shard as a partial update, even a whole one: it fills a new
    array with the fill value for every inner chunk, copies the chunk's values into it, copies
    them again to append the checksum (``np.append``, a slow byte-wise copy) and once more to
    join the chunks -- four passes over a 64 MiB block (~40 ms, as long as the file write)
    before the write. Here an uncompressed chunk's bytes are copied once, straight into the
    object, its crc32c computed in place; compressed inner chunks are encoded by the shard's
    own codecs (Zarr's inner pipeline) from views of the block and copied once into the shard.
    A shard's index follows its chunks: the layout Zarr's sharding specification defines, inner
    chunks in C order, the order being the writer's choice. ``tests/io/test_zarr_private.py``
    reads such objects back through Zarr.
    """
    layout = _object_layout(array)
    if layout is None or not _whole_object(array, selection):
        return False
    sharding, plain = layout
    inner = None if sharding is None else tuple(sharding.chunk_shape)
    shape = tuple(s.stop - s.start for s in selection)
    coords = tuple(s.start // size for s, size in zip(selection, shape, strict=True))
    values = np.asarray(values, dtype=array.dtype)
    chunks = _inner_chunks(values, inner or shape)
    if plain:
        encoded, index = _plain_chunks(chunks, values.dtype, with_index=inner is not None)
    else:
        assert sharding is not None  # only shards hold compressed chunks here
        encoded, index = _encoded_chunks(array, sharding, coords, chunks)
    if inner is not None:  # a shard: its index (offset, length per chunk) and its crc32c last
        data_bytes = encoded.size - index.nbytes - 4
        encoded[data_bytes:-4] = index.reshape(-1).view(np.uint8)
        _put_crc32c(encoded, data_bytes, index.nbytes)
    _put(array, array.metadata.encode_chunk_key(coords), encoded)
    return True


def _put(array: zarr.Array[Any], key: str, encoded: np.ndarray) -> None:
    """Store ``encoded`` as ``key`` of ``array``: a local store's file replaced in one step
    (no round trip through Zarr's loop), any other store through Zarr."""
    folder = array_folder(array)
    if folder is not None:
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, encoded.data)  # a memoryview: no copy
        return
    buffer = default_buffer_prototype().buffer.from_array_like(encoded)
    sync((array.async_array.store_path / key).set(buffer))


def _inner_chunks(values: np.ndarray, inner: tuple[int, ...]) -> dict[tuple[int, ...], Any]:
    """The inner chunks of ``values`` (views), by their coordinates in the object, C order."""
    counts = tuple(size // chunk for size, chunk in zip(values.shape, inner, strict=True))
    return {
        coords: values[tuple(slice(c * n, (c + 1) * n) for c, n in zip(coords, inner, strict=True))]
        for coords in np.ndindex(*counts)
    }


def _index_for(chunks: dict[tuple[int, ...], Any]) -> np.ndarray:
    """An empty shard index for ``chunks`` (every entry absent until set)."""
    counts = tuple(c + 1 for c in max(chunks))
    return np.full((*counts, 2), _ABSENT, dtype="<u8")


def _plain_chunks(
    chunks: dict[tuple[int, ...], Any], dtype: np.dtype[Any], *, with_index: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The object of uncompressed chunks, each followed by its crc32c, with room for an index
    after them (``with_index``), and that index."""
    index = _index_for(chunks)
    chunk_bytes = next(iter(chunks.values())).size * dtype.itemsize
    data_bytes = len(chunks) * (chunk_bytes + 4)
    encoded = np.empty(data_bytes + (index.nbytes + 4 if with_index else 0), dtype=np.uint8)
    for number, (coords, chunk) in enumerate(chunks.items()):
        start = number * (chunk_bytes + 4)
        np.copyto(encoded[start : start + chunk_bytes].view(dtype).reshape(chunk.shape), chunk)
        _put_crc32c(encoded, start, chunk_bytes)
        index[coords] = (start, chunk_bytes + 4)
    return encoded, index


def _encoded_chunks(
    array: zarr.Array[Any],
    sharding: ShardingCodec,
    coords: tuple[int, ...],
    chunks: dict[tuple[int, ...], Any],
) -> tuple[np.ndarray, np.ndarray]:
    """The shard at ``coords`` of its chunks encoded by the shard's inner codecs
    (``sharding``), with room for its index after them, and that index (an empty chunk stays
    absent)."""
    prototype = default_buffer_prototype()
    shard_spec = array.metadata.get_chunk_spec(coords, array.async_array.config, prototype)
    chunk_spec = sharding._get_chunk_spec(shard_spec)  # private: see the module docstring
    pieces = [_encode_inner(sharding, chunk_spec, chunk) for chunk in chunks.values()]
    index = _index_for(chunks)
    data_bytes = sum(piece.size for piece in pieces if piece is not None)
    encoded = np.empty(data_bytes + index.nbytes + 4, dtype=np.uint8)
    start = 0
    for chunk_coords, piece in zip(chunks, pieces, strict=True):
        if piece is not None:
            encoded[start : start + piece.size] = piece
            index[chunk_coords] = (start, piece.size)
            start += piece.size
    return encoded, index


def _encode_inner(sharding: ShardingCodec, chunk_spec: Any, chunk: np.ndarray) -> np.ndarray | None:
    """One inner chunk encoded by the shard's codecs in turn, in this thread (their private
    ``_encode_sync``; featuremap's shards hold ``bytes`` and bytes-to-bytes codecs only, whose
    chunk spec does not change along the chain); ``None`` where a codec drops the chunk."""
    encoded: Any = default_buffer_prototype().nd_buffer.from_numpy_array(chunk)
    codec: Any
    for codec in sharding.codecs:
        encoded = codec._encode_sync(encoded, chunk_spec)  # private: see the module docstring
        if encoded is None:
            return None
    piece: np.ndarray = encoded.as_numpy_array()
    return piece


def _put_crc32c(encoded: np.ndarray, start: int, length: int) -> None:
    """The crc32c of ``encoded[start:start + length]``, little-endian, in the 4 bytes after."""
    checksum = google_crc32c.value(encoded[start : start + length])
    encoded[start + length : start + length + 4] = np.array([checksum], "<u4").view(np.uint8)


#: ``bytes`` little-endian + ``crc32c``, as their JSON (the crc32c codec's class may vary).
_CHECKSUMMED = [BytesCodec(endian="little").to_dict(), Crc32cCodec().to_dict()]


def _object_layout(array: zarr.Array[Any]) -> tuple[ShardingCodec | None, bool] | None:
    """``(sharding codec, plain)`` of a Zarr v3 array featuremap can write whole objects of:
    unsharded with uncompressed, checksummed chunks (``(None, True)``), or sharded with a
    checksummed index at the end and inner chunks serialised by ``bytes`` first (``plain`` when
    they are uncompressed and checksummed too); ``None`` for anything else (Zarr v2, another
    byte order, other codecs around the shards, array-to-array codecs inside them)."""
    metadata = array.metadata
    dtype = np.dtype(array.dtype)
    if metadata.zarr_format != 3 or dtype.newbyteorder("<") != dtype.newbyteorder("="):
        return None
    codecs = [codec.to_dict() for codec in metadata.codecs]
    if codecs == _CHECKSUMMED:
        return None, True
    sharding = metadata.codecs[0]
    if (
        len(codecs) == 1
        and isinstance(sharding, ShardingCodec)
        and sharding.index_location.value == "end"
        and [codec.to_dict() for codec in sharding.index_codecs] == _CHECKSUMMED
        and isinstance(sharding.codecs[0], BytesCodec)
    ):
        plain = [codec.to_dict() for codec in sharding.codecs] == _CHECKSUMMED
        return sharding, plain
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
