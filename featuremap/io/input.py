"""The input of a job: a Zarr array (format 2 or 3), or a group plus the array's name.

:func:`open_input` validates it and says how its axes map to ``(*batch, channel, y, x)``: the
last two axes are ``y, x``; the channel axis is ``-3`` for 3+ dims (or ``channel_axis``, or a
dimension named like a channel); a 2-D image gets a length-1 channel axis; leading axes are
batch axes, carried through to the output.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.core.metadata import ArrayV3Metadata

from featuremap.errors import InputError, describe
from featuremap.io._paths import local_path
from featuremap.io.layout import FEATURE_DIMS

__all__ = ["CHANNEL_NAMES", "InputArray", "dimension_names", "open_input"]

#: Dimension names that mark the channel axis of an input when ``channel_axis`` is not given.
CHANNEL_NAMES = frozenset({"c", "channel", "channels", "band", "bands"})


@dataclass(frozen=True)
class InputArray:
    """A validated input array and how its axes map to ``(*batch, channel, y, x)``.

    Attributes
    ----------
    array : zarr.Array[Any]
    path : str
        The store path or URL as given.
    name : str or None
        The array's path inside the store (``None`` when the store is the array).
    channel_axis : int or None
        Negative index of the channel axis, ``None`` for a 2-D image.
    dims : tuple of str or None
        The array's dimension names, when it has them.
    """

    array: zarr.Array[Any]
    path: str
    name: str | None
    channel_axis: int | None
    dims: tuple[str, ...] | None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(self.array.chunks)

    @property
    def batch_axes(self) -> tuple[int, ...]:
        """Positive indices of the batch axes, in order."""
        channel = None if self.channel_axis is None else self.array.ndim + self.channel_axis
        return tuple(i for i in range(self.array.ndim - 2) if i != channel)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[i] for i in self.batch_axes)

    @property
    def batch_chunks(self) -> tuple[int, ...]:
        return tuple(self.chunks[i] for i in self.batch_axes)

    @property
    def channels(self) -> int:
        return 1 if self.channel_axis is None else self.shape[self.channel_axis]

    @property
    def spatial_shape(self) -> tuple[int, int]:
        return (self.shape[-2], self.shape[-1])

    @property
    def spatial_chunks(self) -> tuple[int, int]:
        return (self.chunks[-2], self.chunks[-1])

    @property
    def batch_dims(self) -> tuple[str, ...]:
        """Names for the output's batch axes: the input's own when usable, else ``dim_<i>``."""
        names = tuple(self.dims[i] for i in self.batch_axes) if self.dims else ()
        usable = (
            len(names) == len(self.batch_axes)
            and all(isinstance(n, str) and n for n in names)
            and len(set(names)) == len(names)
            and not set(names) & set(FEATURE_DIMS)
        )
        return names if usable else tuple(f"dim_{i}" for i in self.batch_axes)

    def identity(self) -> dict[str, Any]:
        """What identifies the input for the fingerprint and provenance."""
        metadata = json.dumps(self.array.metadata.to_dict(), sort_keys=True, default=str)
        return {
            "path": self.path,
            "array": self.name,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "chunks": list(self.chunks),
            "channel_axis": self.channel_axis,
            "metadata_sha256": hashlib.sha256(metadata.encode()).hexdigest(),
        }

    def to_dask(self, spatial_chunks: tuple[int, int]) -> Any:
        """The input as a Dask array ``(*batch, C, H, W)``.

        ``spatial_chunks`` must be whole multiples of the storage chunks (except at the far
        border) so every stored chunk is read by exactly one task; the channel axis is one chunk.
        """
        import dask.array as da

        read_chunks = list(self.chunks)
        read_chunks[-2:] = spatial_chunks
        if self.channel_axis is not None:
            read_chunks[self.channel_axis] = self.shape[self.channel_axis]
        x = da.from_zarr(self.path, component=self.name, chunks=tuple(read_chunks))
        if self.channel_axis is None:
            return x[..., None, :, :]
        return da.moveaxis(x, self.channel_axis, -3)


def dimension_names(array: zarr.Array[Any]) -> tuple[str, ...] | None:
    """The array's dimension names: Zarr v3 ``dimension_names``, or xarray's
    ``_ARRAY_DIMENSIONS`` attribute in format 2; ``None`` unless every axis has a name."""
    names: Any
    if isinstance(array.metadata, ArrayV3Metadata):
        names = array.metadata.dimension_names
    else:
        names = array.attrs.get("_ARRAY_DIMENSIONS")  # xarray's convention for format 2
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None


def _parse_channel_axis(channel_axis: Any, ndim: int, dims: tuple[str, ...] | None) -> int | None:
    if channel_axis is None:
        if ndim == 2:
            return None
        named = [i - ndim for i, n in enumerate(dims or ()) if n.lower() in CHANNEL_NAMES]
        named = [i for i in named if i <= -3]
        return named[0] if len(named) == 1 else -3
    if ndim == 2:
        raise InputError(
            f"channel_axis {describe(channel_axis)} was given but the input is 2-D (y, x) and has no "
            "channel axis; leave channel_axis out"
        )
    if (
        isinstance(channel_axis, bool)
        or not isinstance(channel_axis, (int, np.integer))
        or not (0 <= channel_axis <= ndim - 3 or -ndim <= channel_axis <= -3)
    ):
        raise InputError(
            f"channel_axis must be an integer in [{-ndim}, -3] or [0, {ndim - 3}] for a {ndim}-D input "
            f"(the last two axes are y, x), got {describe(channel_axis)}"
        )
    return int(channel_axis) - ndim if channel_axis >= 0 else int(channel_axis)


def _open_node(store: str) -> zarr.Array[Any] | zarr.Group:
    path = local_path(store)
    if path is not None and not path.exists():
        raise InputError(f"input store {store!r} does not exist; check the path")
    try:
        return zarr.open(store=store, mode="r")
    except (
        FileNotFoundError,
        KeyError,
        ValueError,
        TypeError,
    ) as error:  # zarr errors are ValueErrors
        raise InputError(
            f"input store {store!r} is not a Zarr array or group ({type(error).__name__}: {error}); "
            "give a .zarr store"
        ) from None


def _array_names(group: zarr.Group) -> list[str]:
    return sorted(name for name, _ in group.arrays())


def open_input(store: str, array: str | None = None, channel_axis: int | None = None) -> InputArray:
    """Open and validate the input array.

    Parameters
    ----------
    store : str
        Local path or fsspec URL of a Zarr array or group (format 2 or 3).
    array : str, optional
        Path of the array inside a group store; required when ``store`` is a group.
    channel_axis : int, optional
        Index of the channel axis (default ``-3`` for 3+ dims, or the axis whose dimension name
        is ``c``/``channel``/``band``).

    Raises
    ------
    InputError
        Missing path, not a Zarr store, a group without ``array`` (the message lists its arrays),
        a wrong array name, a 0-D/1-D or empty array, a non-numeric dtype, a bad channel axis.
    """
    store = os.fspath(store)
    node = _open_node(store)
    if isinstance(node, zarr.Group):
        names = _array_names(node)
        if array is None:
            raise InputError(
                f"input store {store!r} is a group; choose an array with --array / input.array "
                f"(it holds: {', '.join(names) or 'no arrays'})"
            )
        found = node.get(array)
        if not isinstance(found, zarr.Array):
            raise InputError(
                f"input array {array!r} is not in the group {store!r} (arrays there: "
                f"{', '.join(names) or 'none'})"
            )
        node = found
    elif array is not None:
        raise InputError(
            f"input store {store!r} is itself an array, so array {array!r} cannot be chosen in it; "
            "drop --array / input.array"
        )
    if node.ndim < 2:
        raise InputError(
            f"input array must have at least 2 dimensions (y, x), got shape {tuple(node.shape)}"
        )
    if 0 in node.shape:
        raise InputError(f"input array is empty (shape {tuple(node.shape)})")
    if node.dtype.kind not in "biuf":
        raise InputError(
            f"input array must hold numbers (bool, int, uint or float), got dtype {node.dtype}"
        )
    dims = dimension_names(node)
    return InputArray(node, store, array, _parse_channel_axis(channel_axis, node.ndim, dims), dims)
