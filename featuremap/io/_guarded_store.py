"""Zarr's local store, reading regular files only and metadata documents to a size limit.

Zarr's :class:`~zarr.storage.LocalStore` reads a key with ``Path.read_bytes``: a FIFO where
``zarr.json`` or a chunk should be blocks that read forever, and ``/dev/zero`` (or a 1 GB file)
as ``zarr.json`` is read whole into memory. Every store featuremap opens on a local path is a
:class:`GuardedLocalStore` (:func:`zarr_store`), which opens each key with
:func:`featuremap._files.open_regular` and refuses a metadata document past
:data:`featuremap._files.MAX_DOCUMENT_BYTES`, as one :class:`~featuremap.errors.InputError`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zarr.abc.buffer import Buffer, BufferPrototype
from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.buffer import default_buffer_prototype
from zarr.storage import LocalStore

from featuremap._files import MAX_DOCUMENT_BYTES, open_regular
from featuremap.errors import InputError
from featuremap.io._paths import local_path, normalize_store

__all__ = ["METADATA_KEYS", "GuardedLocalStore", "zarr_store"]

#: The names of Zarr's metadata documents (formats 3 and 2), read to a size limit.
METADATA_KEYS = frozenset({"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"})
_FIX = "replace it with the file Zarr wrote (or remove it), or give another store"


def _read_or_none(
    path: Path, key: str, byte_range: ByteRequest | None
) -> bytes | InputError | None:
    """:func:`_read`, ``None`` for a missing key, the refusal as a value: the thread's future
    never holds an exception, which Zarr's gathers (cancelled by a sibling's failure) would leave
    unretrieved, to be printed at exit."""
    try:
        return _read(path, key, byte_range)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except InputError as error:
        return error


def _read(path: Path, key: str, byte_range: ByteRequest | None) -> bytes:
    """The bytes of one key (or a range of them), from a regular file only."""
    document = key.rsplit("/", 1)[-1] in METADATA_KEYS
    what = "Zarr metadata document" if document else "Zarr chunk"
    descriptor, size = open_regular(path, what, _FIX)
    with os.fdopen(descriptor, "rb") as stream:
        if document and size > MAX_DOCUMENT_BYTES:
            raise InputError(
                f"{what} {str(path)!r} is larger than {MAX_DOCUMENT_BYTES} bytes (a metadata "
                f"document is a few kilobytes); {_FIX}"
            )
        if byte_range is None:
            data = stream.read(MAX_DOCUMENT_BYTES + 1) if document else stream.read()
            if document and len(data) > MAX_DOCUMENT_BYTES:
                raise InputError(f"{what} {str(path)!r} grew past {MAX_DOCUMENT_BYTES} bytes")
            return data
        if isinstance(byte_range, RangeByteRequest):
            stream.seek(byte_range.start)
            return stream.read(byte_range.end - byte_range.start)
        if isinstance(byte_range, OffsetByteRequest):
            stream.seek(byte_range.offset)
        elif isinstance(byte_range, SuffixByteRequest):
            stream.seek(max(0, size - byte_range.suffix))
        else:
            raise TypeError(f"unexpected byte range {byte_range!r}")
        return stream.read()


class GuardedLocalStore(LocalStore):
    """A :class:`~zarr.storage.LocalStore` whose reads open regular files only (a FIFO, device
    or socket is an :class:`~featuremap.errors.InputError`, never a blocking read) and read
    metadata documents to at most :data:`~featuremap._files.MAX_DOCUMENT_BYTES`."""

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        if prototype is None:
            prototype = default_buffer_prototype()
        if not self._is_open:
            await self._open()
        data = await asyncio.to_thread(_read_or_none, self.root / key, key, byte_range)
        if data is None:
            return None
        if isinstance(data, InputError):
            raise data
        return prototype.buffer.from_bytes(data)

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        return list(
            await asyncio.gather(
                *(self.get(key, prototype, byte_range) for key, byte_range in key_ranges)
            )
        )


def zarr_store(store: str, *, read_only: bool = True) -> Any:
    """What to hand Zarr for ``store``: a :class:`GuardedLocalStore` on a local path, the URL
    itself for an object store (its reads are bounded by the service, never a FIFO)."""
    local = local_path(store)
    if local is None:
        return normalize_store(store)
    return GuardedLocalStore(local, read_only=read_only)
