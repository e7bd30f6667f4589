"""Writing an image array into a new Zarr group (the demo's sample data)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zarr

from featuremap.io._guarded_store import zarr_store

__all__ = ["group_attributes", "write_image_group"]


def group_attributes(store: str) -> dict[str, Any] | None:
    """The attributes of the Zarr group at ``store``; ``None`` when nothing readable is a group
    there (a plain folder, a file, an array, a damaged store)."""
    try:
        group = zarr.open_group(zarr_store(store), mode="r")  # a FIFO there: refused, not read
    except Exception:  # noqa: BLE001 -- whatever it is, it is not a readable group
        return None
    return dict(group.attrs)


def write_image_group(
    store: str,
    name: str,
    data: np.ndarray,
    *,
    chunks: Sequence[int],
    dimension_names: Sequence[str],
    array_attrs: Mapping[str, Any],
    group_attrs: Mapping[str, Any],
) -> str:
    """Write ``data`` as array ``name`` of a new Zarr v3 group at ``store`` (replacing it)."""
    group = zarr.open_group(store, mode="w", zarr_format=3)
    array = group.create_array(
        name,
        shape=data.shape,
        dtype=data.dtype,
        chunks=tuple(chunks),
        dimension_names=tuple(dimension_names),
    )
    array[...] = data
    array.attrs.update(dict(array_attrs))
    group.attrs.update(dict(group_attrs))
    return store
