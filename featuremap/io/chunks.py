"""Chunk-level access for ``verify``: which chunks are stored, which fail to decode, deleting.

Stored chunks are *listed*, never opened one by one: a local store by walking its folder, a
remote one through fsspec (whose credentials and endpoint come from the environment, like
Zarr's own). Reading a chunk decodes it through every codec, so the ``crc32c`` codec turns a
corrupted or truncated chunk into an error.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zarr

from featuremap._files import file_kind, read_document
from featuremap.errors import InputError, error_line
from featuremap.io._paths import local_path

__all__ = [
    "Chunk",
    "chunk_value",
    "content_identity",
    "delete_chunks",
    "metadata_documents",
    "region_errors",
    "stored_chunk_indices",
    "stored_chunks",
    "unreadable_chunks",
]

#: The names of Zarr's metadata documents (format 3, then format 2).
_DOCUMENTS = frozenset({"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"})
#: A caller's name for what a region belongs to (e.g. a block index).
Key = Any

#: Chunks read at once: reading is I/O- and decompression-bound, both release the GIL.
READ_THREADS = 8
#: Regions handed to the readers at once (:func:`region_errors`).
REGION_BATCH = 1024

Chunk = tuple[int, ...]


def _list_local(root: Path) -> list[str]:
    keys: list[str] = []
    for folder, _, files in os.walk(root):
        relative = Path(folder).relative_to(root).as_posix()
        prefix = "" if relative == "." else f"{relative}/"
        keys.extend(prefix + name for name in files)
    return keys


def _list_remote(url: str) -> list[str]:
    import fsspec

    filesystem, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/")
    return [key[len(root) + 1 :] for key in filesystem.find(root)]


def content_identity(store: str, array: str | None) -> dict[str, Any]:
    """What identifies an input's *content* cheaply: a digest over every stored object of the
    array -- its key, size and modification time (local files, in nanoseconds), or its ETag on
    an object store -- and how many there are. Costs one listing (and one ``stat`` per local
    chunk) at the start of a job and again on ``--resume``, which refuses an input whose digest
    changed; it reads no chunk."""
    url = f"{store.rstrip('/')}/{array}" if array else store
    root = local_path(url)
    entries: list[str] = []
    if root is not None:
        for key in sorted(_list_local(root)):
            info = (root / key).stat()
            if not stat.S_ISREG(info.st_mode):  # a FIFO would block the block that reads it
                raise InputError(
                    f"input chunk {str(root / key)!r} is not a regular file "
                    f"({file_kind(info.st_mode)}); restore the chunk Zarr wrote, or remove it"
                )
            entries.append(f"{key}\t{info.st_size}\t{info.st_mtime_ns}")
    else:
        import fsspec

        filesystem, remote_root = fsspec.core.url_to_fs(url)
        prefix = remote_root.rstrip("/")
        for path, info in sorted(filesystem.find(prefix, detail=True).items()):
            tag = (
                info.get("ETag")
                or info.get("etag")
                or info.get("LastModified")
                or info.get("mtime")
            )
            entries.append(f"{path[len(prefix) + 1 :]}\t{info.get('size')}\t{tag}")
    digest = hashlib.sha256("\n".join(entries).encode()).hexdigest()
    return {"objects": len(entries), "sha256": digest}


def _array_url(store: str, array: zarr.Array[Any]) -> str:
    return f"{store.rstrip('/')}/{array.path}" if array.path else store


def _listed_keys(store: str, array: zarr.Array[Any]) -> set[str]:
    """Keys (relative to the array's folder) of every object stored under ``array``."""
    url = _array_url(store, array)
    root = local_path(url)
    if root is not None:
        return set(_list_local(root)) if root.is_dir() else set()
    return set(_list_remote(url))


def _chunk_of_key(key: str, array: zarr.Array[Any]) -> Chunk | None:
    """The chunk index a stored key names, or ``None`` for any other object (a metadata
    document, a leftover): parsed, then checked by encoding it back."""
    text = key[1:] if key.startswith("c") else key  # Zarr v3's default encoding: "c/0/1"
    try:
        index = tuple(int(part) for part in re.split(r"[./]", text.lstrip("./")))
    except ValueError:
        return None
    if len(index) != array.ndim or array.metadata.encode_chunk_key(index) != key:
        return None
    return index


def stored_chunk_indices(store: str, array: zarr.Array[Any]) -> Iterator[Chunk]:
    """The chunks (or shards) of ``array`` that are on disk, from one listing: the cost follows
    the objects stored, never the array's grid (a 10^12-chunk grid with four chunks stored
    costs four)."""
    for key in _listed_keys(store, array):
        index = _chunk_of_key(key, array)
        if index is not None:
            yield index


def stored_chunks(store: str, array: zarr.Array[Any], chunks: Iterable[Chunk]) -> set[Chunk]:
    """The chunks among ``chunks`` that are on disk (listed, not read)."""
    keys = _listed_keys(store, array)
    encode = array.metadata.encode_chunk_key
    return {chunk for chunk in chunks if encode(chunk) in keys}


def _read_error(array: zarr.Array[Any], chunk: Chunk) -> str | None:
    try:
        array.blocks[chunk]
    except Exception as error:  # noqa: BLE001 -- any decode failure is damage: crc32c, blosc, truncation
        return error_line(error)
    return None


def unreadable_chunks(array: zarr.Array[Any], chunks: Iterable[Chunk]) -> dict[Chunk, str]:
    """The chunks among ``chunks`` that fail to decode, with the error of each."""
    wanted = list(chunks)
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        errors = pool.map(lambda chunk: _read_error(array, chunk), wanted)
        return {
            chunk: error for chunk, error in zip(wanted, errors, strict=True) if error is not None
        }


def region_errors(
    array: zarr.Array[Any], regions: Iterable[tuple[Key, tuple[slice, ...]]]
) -> dict[Key, str]:
    """For ``(key, region)`` pairs: the keys one of whose regions fails to decode, with the first
    error. A region of one inner chunk of a sharded array decodes that chunk only.

    ``regions`` is consumed :data:`REGION_BATCH` at a time: memory follows the batch and the
    damage found, never the number of regions (a store of millions of inner chunks)."""

    def error_of(region: tuple[slice, ...]) -> str | None:
        try:
            array[region]
        except Exception as error:  # noqa: BLE001 -- any decode failure is damage
            return error_line(error)
        return None

    found: dict[Key, str] = {}
    pending = iter(regions)
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        while batch := list(itertools.islice(pending, REGION_BATCH)):
            errors = pool.map(lambda item: error_of(item[1]), batch)
            for (key, _), error in zip(batch, errors, strict=True):
                if error is not None:
                    found.setdefault(key, error)
    return found


def metadata_documents(store: str) -> dict[str, str]:
    """The metadata documents (``zarr.json``, ``.zarray``, ``.zattrs``, ``.zgroup``) of a store
    that do not parse as JSON, by path, with the error; ``{}`` when every one parses."""
    root = local_path(store)
    if root is not None:
        keys = _list_local(root)

        def read(key: str) -> bytes:
            return read_document(root / key, "Zarr metadata document", "replace or remove it")

    else:
        import fsspec

        filesystem, remote_root = fsspec.core.url_to_fs(store)
        prefix = remote_root.rstrip("/")
        keys = [key[len(prefix) + 1 :] for key in filesystem.find(prefix)]

        def read(key: str) -> bytes:
            return bytes(filesystem.cat_file(f"{prefix}/{key}"))

    damaged = {}
    for key in sorted(keys):
        if key.rsplit("/", 1)[-1] not in _DOCUMENTS:
            continue
        try:
            json.loads(read(key))
        except (OSError, ValueError) as error:
            damaged[key] = error_line(error)
    return damaged


def chunk_value(array: zarr.Array[Any], chunk: Chunk) -> Any:
    """The decoded contents of one chunk."""
    return array.blocks[chunk]


def delete_chunks(store: str, array: zarr.Array[Any], chunks: Iterable[Chunk]) -> None:
    """Delete the stored objects of ``chunks`` (missing ones are fine)."""
    url = _array_url(store, array)
    root = local_path(url)
    keys = [array.metadata.encode_chunk_key(chunk) for chunk in chunks]
    if root is not None:
        for key in keys:
            (root / key).unlink(missing_ok=True)
        return
    import fsspec

    filesystem, remote_root = fsspec.core.url_to_fs(url)
    for key in keys:
        path = f"{remote_root.rstrip('/')}/{key}"
        if filesystem.exists(path):
            filesystem.rm(path)
