"""Chunk-level access for ``verify``: which chunks are stored, which fail to decode, deleting.

Stored chunks are *listed*, never opened one by one: a local store by walking its folder, a
remote one through fsspec (whose credentials and endpoint come from the environment, like
Zarr's own). Reading a chunk decodes it through every codec, so the ``crc32c`` codec turns a
corrupted or truncated chunk into an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zarr

from featuremap.errors import error_line
from featuremap.io._paths import local_path

__all__ = ["Chunk", "chunk_value", "delete_chunks", "stored_chunks", "unreadable_chunks"]

#: Chunks read at once: reading is I/O- and decompression-bound, both release the GIL.
READ_THREADS = 8

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


def _array_url(store: str, array: zarr.Array[Any]) -> str:
    return f"{store.rstrip('/')}/{array.path}" if array.path else store


def _listed_keys(store: str, array: zarr.Array[Any]) -> set[str]:
    """Keys (relative to the array's folder) of every object stored under ``array``."""
    url = _array_url(store, array)
    root = local_path(url)
    if root is not None:
        return set(_list_local(root)) if root.is_dir() else set()
    return set(_list_remote(url))


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
