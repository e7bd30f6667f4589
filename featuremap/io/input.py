"""The input of a job: a Zarr array, a group plus the array's name, or an OME-Zarr image group.

:func:`open_input` finds the array (a resolution level of an OME-Zarr image; the only data
variable of an xarray dataset), says what each of its axes is (:mod:`.axes`), applies a region
and a channel subset, and reads where its pixels are in physical space (:mod:`.placement`):
NGFF transforms of the chosen level, or regular xarray coordinates and a CF ``grid_mapping``.

The result, :class:`InputArray`, is a frozen, picklable description; :meth:`InputArray.to_dask`
gives the pixels as ``(*batch, C, y, x)`` (``(*batch, C, z, y, x)`` for a 3-D stack) -- any
storage order (channel-last included) is reordered inside each block's read, never by copying
the input.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from featuremap.errors import InputError, describe, error_line, input_key, option, spoken
from featuremap.io._bioformats2raw import is_bioformats2raw, series_group
from featuremap.io._guarded_store import zarr_store
from featuremap.io._paths import access_error, check_node_path, local_path
from featuremap.io.axes import Axes, resolve_axes
from featuremap.io.chunk_cache import read_region
from featuremap.io.layout import FEATURE_DIMS, LEGACY_FEATURE_AXIS
from featuremap.io.ome import ome_placement, read_multiscales
from featuremap.io.placement import Interval, Placement, xarray_placement
from featuremap.io.selection import InputSelection, channel_indices, region_intervals

__all__ = ["InputArray", "InputSelection", "dimension_names", "open_input"]


@dataclass(frozen=True)
class InputArray:
    """A validated input: where it is, what its axes are, the part read and where it lies.

    Attributes
    ----------
    path : str
        The store path or URL as given.
    name : str or None
        The array's path inside the store (``None`` when the store is the array).
    shape, chunks : tuple of int
        The stored array's, in storage order.
    dtype : numpy.dtype
    axes : Axes
        The kind of every stored axis.
    region : tuple of (start, stop)
        Per stored axis, the part read.
    channels : tuple of int or None
        Indices of the channels read (``None``: all).
    placement : Placement
        The read part's physical placement (region origin included).
    channel_labels : tuple of str or None
        Labels of the channels read, when the input names them.
    level : int or None
        The OME-Zarr level read.
    metadata_sha256 : str
        Digest of the array's metadata (for the job's fingerprint).
    """

    path: str
    name: str | None
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype[Any]
    axes: Axes
    region: tuple[Interval, ...]
    channels: tuple[int, ...] | None
    placement: Placement
    channel_labels: tuple[str, ...] | None = None
    level: int | None = None
    ome_version: str | None = None
    metadata_sha256: str = ""

    # -- the part read, in (*batch, c, y, x) terms --------------------------------------------

    def _length(self, axis: int) -> int:
        start, stop = self.region[axis]
        return stop - start

    @property
    def channel_count(self) -> int:
        """Channels the first layer sees (1 without a channel axis)."""
        channel = self.axes.channel
        if channel is None:
            return 1
        return len(self.channels) if self.channels is not None else self._length(channel)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Sizes of the part read along the spatial axes, ``(y, x)`` or ``(z, y, x)``."""
        return tuple(self._length(axis) for axis in self.axes.spatial)

    @property
    def spatial_chunks(self) -> tuple[int, ...]:
        return tuple(self.chunks[axis] for axis in self.axes.spatial)

    @property
    def physical_spacing(self) -> tuple[float, ...] | None:
        """:attr:`Placement.physical_spacing` of the input."""
        return self.placement.physical_spacing

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self._length(i) for i in self.axes.batch)

    @property
    def batch_chunks(self) -> tuple[int, ...]:
        return tuple(self.chunks[i] for i in self.axes.batch)

    @property
    def batch_kinds(self) -> tuple[str, ...]:
        return tuple(self.axes.axes[i].kind for i in self.axes.batch)

    @property
    def batch_dims(self) -> tuple[str, ...]:
        """Names for the output's batch axes: the input's own when usable, else ``dim_<i>``."""
        names = tuple(self.axes.axes[i].name for i in self.axes.batch)
        usable = len(set(names)) == len(names) and not set(names) & {
            *FEATURE_DIMS,
            LEGACY_FEATURE_AXIS,
        }
        return names if usable else tuple(f"dim_{i}" for i in self.axes.batch)

    @property
    def region_origin(self) -> tuple[int, ...]:
        """Input pixel (``(y, x)`` or ``(z, y, x)``) of the read part's first pixel."""
        return tuple(self.region[axis][0] for axis in self.axes.spatial)

    def identity(self) -> dict[str, Any]:
        """What identifies the input for the fingerprint and provenance."""
        return {
            "path": self.path,
            "array": self.name,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "chunks": list(self.chunks),
            "axes": list(self.axes.names),
            "kinds": [axis.kind for axis in self.axes.axes],
            "axes_from": self.axes.source,
            "level": self.level,
            "region": [list(interval) for interval in self.region],
            "channels": None if self.channels is None else list(self.channels),
            "placement": self.placement.to_dict(),
            "metadata_sha256": self.metadata_sha256,
        }

    def to_dask(self, spatial_chunks: Sequence[int]) -> Any:
        """The part read as a Dask array ``(*batch, C, *spatial)``, one task per read chunk.

        ``spatial_chunks`` must be whole multiples of the storage chunks (except at the far
        border), so each stored chunk is read by one task; the channel axis is one chunk; batch
        axes keep the storage chunks. Transposing and selecting channels happen inside each
        block's task.
        """
        import dask.array as da

        read_chunks = list(self.chunks)
        for axis, size in zip(self.axes.spatial, spatial_chunks, strict=True):
            read_chunks[axis] = size
        channel = self.axes.channel
        if channel is not None:
            read_chunks[channel] = self.shape[channel]
        x = da.from_zarr(self.path, component=self.name, chunks=tuple(read_chunks))
        x = x[tuple(slice(start, stop) for start, stop in self.region)]
        if self.channels is not None and channel is not None:
            x = da.take(x, list(self.channels), axis=channel)
        x = x.transpose(self.axes.order)
        if channel is None:
            x = x[(..., None, *(slice(None),) * self.axes.spatial_ndim)]
        return _regular_batch_chunks(x, self.batch_chunks)

    def read(
        self,
        batch: Sequence[slice],
        intervals: Sequence[Sequence[Interval]],
        *,
        session: str = "",
    ) -> np.ndarray:
        """A block's input window as ``(*batch, C, *spatial)``: the batch slices, the channels
        read and, per spatial axis, the concatenation of its ``intervals`` (coordinates of the
        part read).

        Each interval box is cut from its decoded chunks, shared with the neighbouring
        blocks this process computes (:func:`featuremap.io.chunk_cache.read_region`); the
        reordering of axes and the channel selection happen on this small window, never on the
        whole input. The opened array and the decoded chunks are reused by the reads of one
        ``session`` (a job's token) in a process.
        """
        array = _open_array(self.path, self.name, session)
        axes = self.axes
        index: list[Any] = [slice(start, stop) for start, stop in self.region]
        for axis, part in zip(axes.batch, batch, strict=True):
            start = self.region[axis][0]
            index[axis] = slice(start + (part.start or 0), start + part.stop)

        def along(position: int) -> np.ndarray:
            """The window's pieces along spatial axis ``position`` onwards, concatenated."""
            axis, origin = axes.spatial[position], self.region[axes.spatial[position]][0]
            parts = []
            for start, stop in intervals[position]:
                index[axis] = slice(origin + start, origin + stop)
                parts.append(
                    along(position + 1)
                    if position + 1 < len(axes.spatial)
                    else read_region(array, index, session=session)
                )
            return np.concatenate(parts, axis=axis)

        window = along(0)
        if self.channels is not None and axes.channel is not None:
            window = np.take(window, self.channels, axis=axes.channel)
        window = window.transpose(axes.order)
        if axes.channel is not None:
            return window
        return window[(..., None, *(slice(None),) * axes.spatial_ndim)]


@functools.lru_cache(maxsize=8)
def _open_array(path: str, name: str | None, session: str) -> zarr.Array[Any]:
    """The input array, opened once per worker process and job (``session``): a worker that
    outlives a job never reads a replaced array through metadata cached for an earlier one."""
    node = zarr.open(store=zarr_store(path), mode="r", path=name or "")
    if not isinstance(node, zarr.Array):
        raise InputError(f"input {path!r} ({name}) is no longer an array")
    return node


def _regular_batch_chunks(x: Any, sizes: Sequence[int]) -> Any:
    """Batch axes chunked regularly from the region's start (output blocks never straddle an
    output chunk); a region that starts inside a stored chunk reads across chunks for it."""
    wanted = {
        axis: size for axis, size in enumerate(sizes) if any(c != size for c in x.chunks[axis][:-1])
    }
    return x.rechunk(wanted) if wanted else x


def dimension_names(array: zarr.Array[Any]) -> tuple[str, ...] | None:
    """The array's dimension names: Zarr v3 ``dimension_names``, or xarray's
    ``_ARRAY_DIMENSIONS`` attribute in format 2; ``None`` unless every axis has a name."""
    names: Any
    if array.metadata.zarr_format == 3:
        names = getattr(array.metadata, "dimension_names", None)
    else:
        names = array.attrs.get("_ARRAY_DIMENSIONS")  # xarray's convention for format 2
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None


def _open_node(store: str) -> zarr.Array[Any] | zarr.Group:
    path = local_path(store)
    if path is not None and not path.exists():
        raise InputError(f"input store {store!r} does not exist; check the path")
    try:
        return zarr.open(store=zarr_store(store), mode="r")
    except InputError:  # a metadata document that is a FIFO, a device or too large
        raise
    except (FileNotFoundError, KeyError, ValueError, TypeError) as error:
        raise InputError(
            f"input store {store!r} is not a Zarr array or group ({error_line(error)}); "
            "give a .zarr store"
        ) from None
    except Exception as error:  # noqa: BLE001 -- object stores: credentials, permissions, network
        raise access_error("input store", store, error) from None


def _array_names(group: zarr.Group) -> list[str]:
    return sorted(name for name, _ in group.arrays())


def _data_variables(group: zarr.Group) -> list[str]:
    """xarray data variables of a group: arrays that are no other array's coordinate (named
    like one of its dimensions) and no CF grid mapping."""
    arrays = dict(group.arrays())
    dims = {d for a in arrays.values() for d in (dimension_names(a) or ())}
    mappings = {str(a.attrs.get("grid_mapping")) for a in arrays.values()}
    return sorted(
        n for n, a in arrays.items() if n not in dims and n not in mappings and a.ndim >= 2
    )


def _image_groups(group: zarr.Group) -> list[str]:
    """The subgroups of ``group`` that are OME-Zarr images (a plate, a bioformats2raw root)."""
    return sorted(
        name for name, child in group.groups() if read_multiscales(dict(child.attrs)) is not None
    )


def _pick_array(group: zarr.Group, store: str, array: str | None) -> tuple[str, zarr.Array[Any]]:
    names = _array_names(group)
    if array is None:
        candidates = _data_variables(group)
        images = _image_groups(group) if not candidates else []
        if images:
            raise InputError(
                f"input store {store!r} holds OME-Zarr images ({', '.join(images)}), not one; "
                f"give one of them as the input, e.g. {store.rstrip('/')}/{images[0]}"
            )
        if len(candidates) != 1:
            raise InputError(
                f"input store {store!r} is a group; choose an array with {input_key('array')} "
                f"(it holds: {', '.join(names) or 'no arrays'})"
            )
        array = candidates[0]
    check_node_path(array, f"input array ({input_key('array')})")
    found = group.get(array)
    if not isinstance(found, zarr.Array):
        raise InputError(
            f"input array {array!r} is not in the group {store!r} (arrays there: "
            f"{', '.join(names) or 'none'})"
        )
    return array, found


def _check_array(node: zarr.Array[Any]) -> None:
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


def _digest(array: zarr.Array[Any]) -> str:
    metadata = json.dumps(array.metadata.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(metadata.encode()).hexdigest()


def open_input(
    store: str | os.PathLike[str],
    array: str | None = None,
    selection: InputSelection | None = None,
    *,
    spatial_ndim: int = 2,
) -> InputArray:
    """Open and validate the input; reads metadata only.

    Parameters
    ----------
    store : str
        Local path or fsspec URL of a Zarr array, a group (format 2 or 3; an xarray dataset), or an
        OME-Zarr image group.
    array : str, optional
        Path of the array inside a group store; needed unless the group is an OME-Zarr image or
        holds exactly one data variable.
    selection : InputSelection, optional
        Axes, level, region and channels (default: everything, axes from the metadata).
    spatial_ndim : {2, 3}
        The rank of the layers that will read it: 3 makes the input's ``z`` axis spatial.

    Raises
    ------
    InputError
        Missing path, not a Zarr store, an ambiguous group, a wrong array name or level, an axis
        that cannot be told, a region or channel outside the input, a non-numeric dtype.
    """
    store = os.fspath(store)
    selection = selection or InputSelection()
    node = _open_node(store)
    group = node if isinstance(node, zarr.Group) else None
    prefix = ""
    if group is not None and is_bioformats2raw(group):
        series, group = series_group(group, store, selection.series)
        prefix = f"{series}/"
    elif selection.series is not None:
        raise InputError(
            f"input.series {describe(selection.series)} was given but {store!r} is not a "
            "bioformats2raw layout (a root group of image series 0/, 1/, ...); leave it out"
        )
    multiscale = None if group is None else read_multiscales(dict(group.attrs))
    level_index = None
    if group is not None and multiscale is not None:
        # --array naming a level's path (the older way to read an OME-Zarr image) picks that level
        if array is not None and selection.level is not None and array != selection.level:
            raise InputError(
                f"{option('array', repr(array))} and {spoken('--level', 'input.level')} "
                f"{describe(selection.level)} disagree; give {spoken('--level', 'input.level')} only"
            )
        level_index, level = multiscale.level(
            selection.level if selection.level is not None else array
        )
        array, node = _pick_array(group, store, level.path)
    elif group is not None:
        array, node = _pick_array(group, store, array)
    elif array is not None:
        raise InputError(
            f"input store {store!r} is itself an array, so array {array!r} cannot be chosen in it; "
            f"drop {input_key('array')}"
        )
    if selection.level is not None and level_index is None:
        raise InputError(
            f"{input_key('level')} {describe(selection.level)} was given but {store!r} is not an "
            "OME-Zarr image group; leave it out"
        )
    assert isinstance(node, zarr.Array)
    _check_array(node)
    axes = resolve_axes(
        node.ndim,
        spec=selection.axes,
        names=dimension_names(node),
        ome_axes=None if multiscale is None else multiscale.axes,
        channel_axis=selection.channel_axis,
        spatial_ndim=spatial_ndim,
    )
    region = region_intervals(axes, node.shape, selection.region)
    if multiscale is not None and level_index is not None:
        placement = ome_placement(multiscale, level_index, axes, region)
        labels = multiscale.channel_labels
    else:
        placement, labels = xarray_placement(group, node, axes, region)
    channel = axes.channel
    channels = channel_indices(
        selection.channels, 1 if channel is None else node.shape[channel], labels
    )
    if labels is not None and channel is not None:
        labels = tuple(labels[i] for i in (channels or range(len(labels))))
    return InputArray(
        path=store,
        name=None if array is None else prefix + array,
        shape=tuple(node.shape),
        chunks=tuple(node.chunks),
        dtype=node.dtype,
        axes=axes,
        region=region,
        channels=channels,
        placement=placement,
        channel_labels=labels,
        level=level_index,
        ome_version=None if multiscale is None else multiscale.version,
        metadata_sha256=_digest(node),
    )
