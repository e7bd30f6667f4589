"""Zarr stores: opening and validating the input, laying out and reading the output.

Input (DESIGN section 6): a Zarr array (format 2 or 3), or a group plus an array name. The last two
axes are ``y, x``; the channel axis is ``-3`` for 3+ dims (or ``channel_axis``, or a dimension named
like a channel); a 2-D image gets a length-1 channel axis; leading axes are batch axes.

Output: a Zarr format 3 group ::

    features            (*batch, feature, y, x) float32, one chunk per output block,
                        crc32c-checked, geometry in attrs["featuremap"]
    y, x                1-D centres of the output pixels in input pixel units (offset + i * jump)
    feature             0..J-1
    layers/<i>/weight   conv weights and biases (a subgroup: xarray reads only root arrays)
    layers/<i>/bias
    _job/done           done-markers, one chunk per block (see :mod:`featuremap._jobs`)

with the job status, provenance and OME-NGFF 0.5 ``multiscales`` in the root attributes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.codecs

from featuremap import _jobs
from featuremap.errors import InputError, describe
from featuremap.geometry import LayerGeometry, StackGeometry, ceil_div

__all__ = [
    "FEATURES",
    "FeatureStore",
    "InputArray",
    "OutputLayout",
    "create_output",
    "describe_layers",
    "feature_codecs",
    "is_url",
    "local_path",
    "open_features",
    "open_input",
    "open_output_group",
    "read_status",
    "sweep_partial_files",
]

FEATURES = "features"
FEATURE_DIMS = ("feature", "y", "x")
#: Dimension names that mark the channel axis of an input when ``channel_axis`` is not given.
CHANNEL_NAMES = frozenset({"c", "channel", "channels", "band", "bands"})


# --------------------------------------------------------------------------------------- paths


def is_url(store: str) -> bool:
    """``True`` for an fsspec URL such as ``s3://bucket/x.zarr`` (``file://`` included)."""
    return "://" in store


def local_path(store: str) -> Path | None:
    """The local filesystem path of a store, or ``None`` for a remote URL."""
    if store.startswith("file://"):
        return Path(store[len("file://"):]).resolve()
    if is_url(store):
        return None
    return Path(store).expanduser().resolve()


def sweep_partial_files(store: str) -> int:
    """Delete leftover ``*.partial`` files of interrupted atomic writes in a local store."""
    root = local_path(store)
    if root is None or not root.is_dir():
        return 0
    swept = 0
    for leftover in root.rglob("*.partial"):
        leftover.unlink(missing_ok=True)
        swept += 1
    return swept


# --------------------------------------------------------------------------------------- input


@dataclass(frozen=True)
class InputArray:
    """A validated input array and how its axes map to ``(*batch, channel, y, x)``.

    Attributes
    ----------
    array : zarr.Array
    path : str
        The store path or URL as given.
    name : str or None
        The array's path inside the store (``None`` when the store is the array).
    channel_axis : int or None
        Negative index of the channel axis, ``None`` for a 2-D image.
    dims : tuple of str or None
        The array's dimension names, when it has them.
    """

    array: zarr.Array
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


def _dimension_names(array: zarr.Array) -> tuple[str, ...] | None:
    if array.metadata.zarr_format == 3:
        names = array.metadata.dimension_names
    else:
        names = array.attrs.get("_ARRAY_DIMENSIONS")  # xarray's convention for format 2
    return tuple(names) if names and all(isinstance(n, str) for n in names) else None


def _parse_channel_axis(
    channel_axis: Any, ndim: int, dims: tuple[str, ...] | None
) -> int | None:
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
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)) or not (
        0 <= channel_axis <= ndim - 3 or -ndim <= channel_axis <= -3
    ):
        raise InputError(
            f"channel_axis must be an integer in [{-ndim}, -3] or [0, {ndim - 3}] for a {ndim}-D input "
            f"(the last two axes are y, x), got {describe(channel_axis)}"
        )
    return int(channel_axis) - ndim if channel_axis >= 0 else int(channel_axis)


def _open_node(store: str) -> zarr.Array | zarr.Group:
    path = local_path(store)
    if path is not None and not path.exists():
        raise InputError(f"input store {store!r} does not exist; check the path")
    try:
        return zarr.open(store=store, mode="r")
    except (FileNotFoundError, KeyError, ValueError, TypeError) as error:  # zarr errors are ValueErrors
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
    dims = _dimension_names(node)
    return InputArray(node, store, array, _parse_channel_axis(channel_axis, node.ndim, dims), dims)


# -------------------------------------------------------------------------------------- output


def feature_codecs() -> list[Any]:
    """Bytes-to-bytes codecs of ``features``: Blosc LZ4 with byte shuffle, then a crc32c checksum.

    Float features of noisy data barely compress; LZ4 costs about what raw bytes cost to write
    while Zstandard (Zarr's default) nearly doubles the write time for ~1 % more savings.
    """
    return [
        zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
        zarr.codecs.Crc32cCodec(),
    ]


def _checked_codecs() -> list[Any]:
    """Default compression plus a checksum, for the small arrays (weights, coordinates)."""
    return [zarr.codecs.ZstdCodec(level=3), zarr.codecs.Crc32cCodec()]


@dataclass(frozen=True)
class OutputLayout:
    """Shape, chunking, names and geometry of the ``features`` array of one job."""

    batch_dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    stack: StackGeometry

    @property
    def dims(self) -> tuple[str, ...]:
        return (*self.batch_dims, *FEATURE_DIMS)

    @property
    def out_chunks(self) -> tuple[int, int]:
        return (self.chunks[-2], self.chunks[-1])

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Blocks per axis, the feature axis left out: ``(*batch_blocks, blocks_y, blocks_x)``."""
        return tuple(
            ceil_div(n, c) for i, (n, c) in enumerate(zip(self.shape, self.chunks))
            if i != len(self.shape) - 3
        )

    @property
    def blocks_total(self) -> int:
        return int(np.prod(self.grid_shape))


def describe_layers(
    layers: Sequence[Any],
    geometries: Sequence[LayerGeometry],
    stacks: Sequence[StackGeometry],
    shapes: Sequence[tuple[int, int, int]],
) -> list[dict[str, Any]]:
    """One metadata dict per layer: its own ``to_dict`` with the padding resolved, plus the
    ``(C, H, W)`` it produces and the stack's receptive field, jump and offset after it."""
    described = []
    for layer, geometry, stack, shape in zip(layers, geometries, stacks, shapes):
        entry = layer.to_dict()
        entry["padding_spec"] = entry.get("padding")
        entry.update(geometry.to_dict())
        entry["output_shape"] = list(shape)
        entry.update(stack.to_dict())
        described.append(entry)
    return described


def _geometry_attrs(layer_dicts: Sequence[Mapping[str, Any]], stack: StackGeometry) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if len(layer_dicts) == 1:
        attrs.update({key: layer_dicts[0][key] for key in ("kernel_size", "stride", "padding", "dilation")})
    attrs.update(stack.to_dict())
    attrs["layers"] = list(layer_dicts)
    return attrs


def _ome_multiscales(layout: OutputLayout) -> dict[str, Any] | None:
    """OME-NGFF 0.5 metadata: at most one batch axis (as time), features as channels."""
    batch = len(layout.batch_dims)
    if batch > 1:
        return None
    axes = [{"name": name, "type": "time"} for name in layout.batch_dims]
    axes += [{"name": "feature", "type": "channel"}, {"name": "y", "type": "space"},
             {"name": "x", "type": "space"}]
    scale = [1.0] * (batch + 1) + [float(j) for j in layout.stack.jump]
    translation = [0.0] * (batch + 1) + [float(o) for o in layout.stack.offset]
    return {
        "version": "0.5",
        "multiscales": [{
            "name": FEATURES,
            "axes": axes,
            "datasets": [{
                "path": FEATURES,
                "coordinateTransformations": [
                    {"type": "scale", "scale": scale},
                    {"type": "translation", "translation": translation},
                ],
            }],
        }],
    }


def _create_coordinate(group: zarr.Group, name: str, values: np.ndarray) -> None:
    array = group.create_array(
        name, shape=values.shape, chunks=values.shape, dtype=values.dtype,
        dimension_names=[name], compressors=_checked_codecs(),
    )
    array[...] = values


def _write_weights(group: zarr.Group, layers: Sequence[Any]) -> None:
    for index, layer in enumerate(layers):
        if layer.kind != "conv":
            continue
        arrays = {"weight": (layer.weight, ["feature", "channel", "ky", "kx"])}
        if layer.bias is not None:
            arrays["bias"] = (layer.bias, ["feature"])
        for name, (values, dims) in arrays.items():
            stored = group.create_array(
                f"layers/{index}/{name}", shape=values.shape, chunks=values.shape,
                dtype="float32", dimension_names=dims, compressors=_checked_codecs(),
            )
            stored[...] = values


def open_output_group(store: str, mode: str, *, consolidated: bool = False) -> zarr.Group:
    """Open an output group (``mode`` ``"r"``, ``"r+"``, ``"w"`` or ``"w-"``), format 3.

    The consolidated metadata (written for xarray when a job completes) is not used unless
    ``consolidated``: it is a snapshot, and the job bookkeeping in ``_job`` changes after it (a
    resumed job's heartbeat). A group opened without it drops it when its attributes are
    written; the job's last write (``status: complete``) opens with it to keep it.
    """
    return zarr.open_group(store=store, mode=mode, zarr_format=3, use_consolidated=consolidated)


def create_output(
    store: str,
    *,
    layout: OutputLayout,
    layers: Sequence[Any],
    layer_dicts: Sequence[Mapping[str, Any]],
    root_attrs: Mapping[str, Any],
    overwrite: bool = False,
) -> zarr.Group:
    """Create every array of a new output store; no block is written yet.

    ``root_attrs`` become the root ``featuremap`` attributes (provenance); the job status is
    written after by :func:`featuremap._jobs.start_job`.
    """
    group = open_output_group(store, "w" if overwrite else "w-")
    features = group.create_array(
        FEATURES,
        shape=layout.shape,
        chunks=layout.chunks,
        dtype="float32",
        dimension_names=list(layout.dims),
        compressors=feature_codecs(),
        fill_value=float("nan"),  # a block never computed reads as NaN, never as zeros
        config={"write_empty_chunks": True},
    )
    features.attrs[_jobs.ROOT_KEY] = _geometry_attrs(layer_dicts, layout.stack)
    centres_y, centres_x = (
        layout.stack.offset[i] + np.arange(layout.shape[-2 + i], dtype=np.float64) * layout.stack.jump[i]
        for i in range(2)
    )
    _create_coordinate(group, "y", centres_y)
    _create_coordinate(group, "x", centres_x)
    _create_coordinate(group, "feature", np.arange(layout.shape[-3], dtype=np.int64))
    _write_weights(group, layers)
    _jobs.create_markers(group, layout.grid_shape)
    attrs: dict[str, Any] = {_jobs.ROOT_KEY: dict(root_attrs)}
    ome = _ome_multiscales(layout)
    if ome is not None:
        attrs["ome"] = ome
    group.attrs.update(attrs)
    return group


# ------------------------------------------------------------------------------------- reading


def _open_output(store: str) -> zarr.Group:
    store = os.fspath(store)
    path = local_path(store)
    if path is not None and not path.exists():
        raise InputError(f"feature store {store!r} does not exist; check the path")
    try:
        group = open_output_group(store, "r")
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        raise InputError(f"{store!r} is not a Zarr group written by featuremap") from None
    if _jobs.ROOT_KEY not in group.attrs or FEATURES not in group:
        raise InputError(
            f"{store!r} is not a featuremap output store (no '{FEATURES}' array or "
            f"'{_jobs.ROOT_KEY}' attributes)"
        )
    return group


def read_status(store: str) -> dict[str, Any]:
    """Job status of an output store, finished or not.

    Returns
    -------
    dict
        ``status`` (``running``, ``complete``, ``failed`` or ``interrupted``: running without a
        recent heartbeat), ``blocks_done`` (counted from the done-markers), ``blocks_total``, and
        ``started``, ``finished``, ``heartbeat``, ``owner``, ``error``.
    """
    return _jobs.job_status(_open_output(store))


@dataclass(frozen=True)
class FeatureStore:
    """An output store opened for reading (``featuremap.open``)."""

    path: str
    group: zarr.Group

    @property
    def array(self) -> zarr.Array:
        return self.group[FEATURES]

    @property
    def data(self) -> Any:
        """The features as a Dask array ``(*batch, feature, y, x)``, one task per stored chunk."""
        import dask.array as da

        return da.from_zarr(self.array)

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(self.array.metadata.dimension_names)

    @property
    def attrs(self) -> dict[str, Any]:
        """The root ``featuremap`` attributes: status, pipeline, fingerprint, input, versions."""
        return dict(self.group.attrs[_jobs.ROOT_KEY])

    @property
    def geometry_attrs(self) -> dict[str, Any]:
        return dict(self.array.attrs[_jobs.ROOT_KEY])

    @property
    def geometry(self) -> StackGeometry:
        """Receptive field, jump and offset of the whole stack."""
        return StackGeometry.from_dict(self.geometry_attrs)

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.geometry_attrs["layers"])

    @property
    def status(self) -> dict[str, Any]:
        return _jobs.job_status(self.group)

    def coords(self) -> dict[str, np.ndarray]:
        """``y``, ``x`` centres (input pixel units) and ``feature`` indices."""
        return {name: self.group[name][...] for name in FEATURE_DIMS}

    def weights(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(weight, bias)`` of layer ``index`` (0-based); bias is ``None`` when it has none."""
        layers = self.layers
        if not (0 <= index < len(layers)) or layers[index].get("type") != "conv":
            conv = [i for i, layer in enumerate(layers) if layer.get("type") == "conv"]
            raise InputError(f"layer {describe(index)} has no weights; conv layers are {conv}")
        weight = self.group[f"layers/{index}/weight"][...]
        bias_key = f"layers/{index}/bias"
        return weight, (self.group[bias_key][...] if layers[index].get("bias") else None)

    def to_xarray(self) -> Any:
        """A labelled ``xarray.DataArray`` with ``y``/``x`` centre coordinates and the attributes."""
        import xarray as xr

        return xr.DataArray(
            self.data, dims=self.dims, coords=self.coords(), name=FEATURES,
            attrs={**self.geometry_attrs, "featuremap": self.attrs},
        )


def open_features(store: str) -> FeatureStore:
    """Open an output store for reading; :class:`InputError` if it is not one."""
    return FeatureStore(os.fspath(store), _open_output(store))
