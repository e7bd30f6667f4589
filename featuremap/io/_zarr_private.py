"""The one place featuremap reaches into Zarr's private API.

``zarr.core.sync.sync`` runs a coroutine on Zarr's own event-loop thread, and
``Array.async_array`` is the asynchronous array behind a synchronous one. Together they read
several chunks in one round trip through that loop (:func:`read_selections`), which the public
API cannot: one ``array[...]`` call per chunk costs a loop round trip each, more than decoding a
small chunk. ``tests/io/test_zarr_private.py`` fails loudly when either moves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import zarr
from zarr.core.sync import sync  # private: see the module docstring

__all__ = ["read_selections"]


def read_selections(array: zarr.Array[Any], selections: Sequence[tuple[slice, ...]]) -> list[Any]:
    """Each selection of ``array`` decoded into its own array, all read concurrently in one call
    into Zarr's event loop; a selection that fails gives its exception in its place."""

    async def read_all() -> list[Any]:
        reads = (array.async_array.getitem(selection) for selection in selections)
        return await asyncio.gather(*reads, return_exceptions=True)

    results: list[Any] = sync(read_all())
    return results
