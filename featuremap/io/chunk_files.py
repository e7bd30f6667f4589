"""Whole chunks of a local, unsharded array decoded straight from their files.

Zarr reads every chunk as a round trip through its event-loop thread: the file read and the
decode each hop to a worker thread and back. For the small chunks of many real inputs that is
most of the cost: a 1024^2 float32 image in 64 zstd chunks of 128^2 took 15 ms through
:func:`._zarr_private.read_selections` (45-52 ms as the first read of a cold process) against
4 ms read and decoded here, in the calling thread (2-core development machine, zarr 3.1.6).

Only layouts whose decoding is a plain chain are read here: Zarr v3 without sharding or
transposition, ``bytes`` then any of ``zstd``, ``blosc``, ``gzip`` and ``crc32c`` (checked);
Zarr v2 in C order without filters, with any numcodecs compressor; numeric data types; a
store on the local file system. A chunk without a file holds the fill value, as in Zarr.
Everything else returns ``None`` and is read through Zarr.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import google_crc32c
import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, Endian, GzipCodec, ZstdCodec
from zarr.storage import LocalStore

__all__ = ["array_folder", "file_bytes", "read_chunk_files"]

_Decode = Callable[[Any], Any]  # bytes-like in, bytes-like out


def read_chunk_files(
    array: zarr.Array[Any], positions: Sequence[tuple[int, ...]]
) -> list[np.ndarray | Exception] | None:
    """The chunks at ``positions`` (chunk-grid coordinates), each decoded into its own array
    clipped to the array's extent -- or an exception in its place where its file cannot be
    read or decoded; ``None`` where the array is not laid out as the module docstring says."""
    decoders = _decoders(array)
    root = array_folder(array)
    if decoders is None or root is None:
        return None
    chunk_shape = tuple(int(size) for size in array.chunks)
    results: list[np.ndarray | Exception] = []
    for position in positions:
        try:
            chunk = _read_one(array, root, position, decoders, chunk_shape)
        except Exception as error:  # noqa: BLE001 -- reported per chunk, as Zarr's reads are
            results.append(error)
            continue
        results.append(chunk)
    return results


def _read_one(
    array: zarr.Array[Any],
    root: Path,
    position: tuple[int, ...],
    decoders: list[_Decode],
    chunk_shape: tuple[int, ...],
) -> np.ndarray:
    extent = tuple(
        slice(0, min(size, length - start * size))
        for start, size, length in zip(position, chunk_shape, array.shape, strict=True)
    )
    data = file_bytes(root / array.metadata.encode_chunk_key(position))
    if data is None:
        shape = tuple(part.stop for part in extent)
        fill = array.metadata.fill_value  # None in some Zarr v2 arrays: zeros, as Zarr reads
        return np.full(shape, 0 if fill is None else fill, dtype=array.dtype)
    for decode in decoders:
        data = decode(data)
    chunk = np.frombuffer(data, dtype=array.dtype)
    if chunk.size != int(np.prod(chunk_shape)):
        raise ValueError(
            f"decoded {chunk.size} values, the chunk holds {int(np.prod(chunk_shape))}"
        )
    return chunk.reshape(chunk_shape)[extent]


def file_bytes(path: Path) -> bytes | None:
    """The contents of a chunk's file, ``None`` where it has none (benchmarks count reads
    here)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def array_folder(array: zarr.Array[Any]) -> Path | None:
    """The folder of ``array`` in a local store (its chunk keys are paths under it), or
    ``None`` in any other store."""
    store = array.store_path.store
    if not isinstance(store, LocalStore):
        return None
    return Path(store.root) / array.store_path.path


def _decoders(array: zarr.Array[Any]) -> list[_Decode] | None:
    """The decoding steps of ``array``'s chunks, last codec first, or ``None``."""
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biuf" or dtype.byteorder == ">":
        return None
    metadata: Any = array.metadata
    if metadata.zarr_format == 2:
        if metadata.filters or metadata.order != "C":
            return None
        compressor = metadata.compressor
        return [] if compressor is None else [compressor.decode]
    first, *rest = metadata.codecs  # Zarr v3
    if not isinstance(first, BytesCodec) or (dtype.itemsize > 1 and first.endian != Endian.little):
        return None
    steps = [_bytes_decoder(codec) for codec in rest]
    if any(step is None for step in steps):
        return None
    return [step for step in reversed(steps) if step is not None]


def _bytes_decoder(codec: Any) -> _Decode | None:
    """numcodecs' decoder of a bytes-to-bytes codec, or ``None`` for codecs not read here."""
    if isinstance(codec, ZstdCodec):
        return numcodecs.Zstd().decode  # type: ignore[no-any-return]
    if isinstance(codec, BloscCodec):
        return numcodecs.Blosc().decode  # type: ignore[no-any-return]  # frames say their codec
    if isinstance(codec, GzipCodec):
        return numcodecs.GZip().decode  # type: ignore[no-any-return]
    if isinstance(codec, Crc32cCodec):
        return _checked
    return None


def _checked(data: Any) -> np.ndarray:
    """``data`` without its trailing crc32c, which must match (Zarr's ``crc32c`` codec)."""
    view = np.frombuffer(data, dtype=np.uint8)  # read-only, as google_crc32c takes it
    body, stored = view[:-4], view[-4:].tobytes()
    if google_crc32c.value(body).to_bytes(4, "little") != stored:
        raise ValueError("stored and computed crc32c checksums do not match")
    return body
