"""Creating an output store, and the store as the job layer sees it (:class:`OutputStore`).

The job layer decides *what* to record (status, owner, heartbeat, provenance); this module
decides *where* it lives in the Zarr group (:mod:`featuremap.io.layout`) and how it is written.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import zarr

from featuremap.io.chunks import stored_chunks
from featuremap.io.input import dimension_names
from featuremap.io.layout import (
    FEATURES,
    JOB_GROUP,
    MARKERS,
    ROOT_KEY,
    OutputLayout,
    checked_codecs,
    feature_codecs,
)
from featuremap.io.ome import OmeAxis, ome_multiscales
from featuremap.io.placement import Coordinate, Spacing, regular_spacing

__all__ = [
    "Block",
    "LayerArrays",
    "Mode",
    "OutputStore",
    "array_at",
    "attrs_dict",
    "consolidate",
    "create_output",
    "feature_chunk",
]

#: A block index ``(*batch_blocks, block_y, block_x)``.
Block = tuple[int, ...]


def feature_chunk(block: Block, feature_axis: int) -> tuple[int, ...]:
    """The chunk of ``features`` that holds ``block``: all features are one chunk, stored at
    ``feature_axis`` (after the batch axes that are not ``z``)."""
    return (*block[:feature_axis], 0, *block[feature_axis:])


@dataclass(frozen=True)
class LayerArrays:
    """The weights (and bias) a conv layer was run with, stored under ``layers/<index>/``."""

    index: int
    weight: np.ndarray
    bias: np.ndarray | None


#: How a store is opened: read, read/write, create (replacing) or create (new only).
Mode = Literal["r", "r+", "w", "w-"]


def _open_group(store: str, mode: Mode, *, consolidated: bool = False) -> zarr.Group:
    return zarr.open_group(store=store, mode=mode, zarr_format=3, use_consolidated=consolidated)


def array_at(group: zarr.Group, path: str) -> zarr.Array[Any]:
    """The array at ``path`` in ``group``; :class:`KeyError` when it is a group or missing."""
    node = group[path]
    if not isinstance(node, zarr.Array):
        raise KeyError(f"{path!r} is a group, not an array")
    return node


def attrs_dict(value: Any) -> dict[str, Any]:
    """An attribute that should hold a mapping, as a dict (``{}`` for anything else)."""
    return dict(value) if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class OutputStore:
    """An output group opened for the job layer: attributes, job records and done-markers.

    Open it with :meth:`open`. The consolidated metadata (written for xarray when a job
    completes) is not used unless ``consolidated``: it is a snapshot, and the job bookkeeping in
    ``_job`` changes after it (a resumed job's heartbeat). A group opened without it drops it
    when its attributes are written; the job's last write (``status: complete``) opens with it.
    """

    path: str
    group: zarr.Group

    @classmethod
    def open(cls, path: str, mode: Mode = "r", *, consolidated: bool = False) -> OutputStore:
        """Open ``path`` (``mode`` ``"r"`` or ``"r+"``); Zarr's own errors propagate."""
        return cls(path, _open_group(path, mode, consolidated=consolidated))

    # -- attributes ---------------------------------------------------------------------------

    @property
    def is_featuremap(self) -> bool:
        """Whether featuremap's root attributes are there."""
        return ROOT_KEY in self.group.attrs

    @property
    def root(self) -> dict[str, Any]:
        """The root ``featuremap`` attributes (status, provenance)."""
        return attrs_dict(self.group.attrs.get(ROOT_KEY))

    def update_root(self, **fields: Any) -> None:
        """Merge ``fields`` into the root ``featuremap`` attributes."""
        self.group.attrs[ROOT_KEY] = {**self.root, **fields}

    @property
    def has_job_group(self) -> bool:
        return JOB_GROUP in self.group

    @property
    def job(self) -> dict[str, Any]:
        """The ``_job`` group's attributes (owner, heartbeat, fingerprint); ``{}`` without it."""
        return dict(self.group[JOB_GROUP].attrs) if self.has_job_group else {}

    def update_job(self, fields: Mapping[str, Any]) -> None:
        """Merge ``fields`` into the ``_job`` group's attributes."""
        self.group[JOB_GROUP].attrs.update(dict(fields))

    # -- blocks -------------------------------------------------------------------------------

    @property
    def features(self) -> zarr.Array[Any]:
        return array_at(self.group, FEATURES)

    @property
    def feature_axis(self) -> int:
        """Where the features are in the stored array (NGFF order: after time-like batch axes)."""
        names = dimension_names(self.features) or ()
        return names.index("feature") if "feature" in names else len(self.features.shape) - 3

    @property
    def out_chunks(self) -> tuple[int, int]:
        """The ``(y, x)`` block size of ``features``."""
        chunks = self.features.chunks
        return (chunks[-2], chunks[-1])

    @property
    def has_markers(self) -> bool:
        return MARKERS in self.group

    @property
    def markers(self) -> zarr.Array[Any]:
        return array_at(self.group, MARKERS)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Blocks per axis (the marker array's shape)."""
        return tuple(self.markers.shape)

    def blocks(self) -> list[Block]:
        """Every block index of the grid, in C order."""
        return list(itertools.product(*(range(n) for n in self.grid_shape)))

    def done_mask(self) -> np.ndarray:
        """``True`` where a block's done-marker is set. A marker chunk that cannot be decoded (a
        damaged file) counts as not set, so the block is recomputed rather than the job stopped."""
        markers = self.markers
        try:
            done: np.ndarray = np.asarray(markers[...]) == 1
            return done
        except Exception:  # noqa: BLE001 -- any decode error: read marker by marker, as verify does
            marked = np.zeros(markers.shape, dtype=bool)
            for index in np.ndindex(*markers.shape):
                try:
                    marked[index] = markers[index] == 1
                except Exception:  # noqa: BLE001 -- unreadable: not done
                    continue
            return marked

    def done_blocks(self) -> set[Block]:
        """Block indices whose done-marker is set."""
        return {tuple(int(i) for i in index) for index in np.argwhere(self.done_mask())}

    def stored_blocks(self) -> set[Block]:
        """Blocks whose ``features`` chunk is on disk (listed, not read)."""
        by_chunk = {feature_chunk(block, self.feature_axis): block for block in self.blocks()}
        return {by_chunk[chunk] for chunk in stored_chunks(self.path, self.features, by_chunk)}

    def count_done(self) -> int:
        """Number of blocks whose done-marker is set (0 without markers)."""
        return int(np.count_nonzero(self.done_mask())) if self.has_markers else 0


def _create_coordinate(
    group: zarr.Group,
    name: str,
    values: np.ndarray,
    attrs: Mapping[str, Any] | None = None,
    dims: Sequence[str] | None = None,
) -> None:
    array = group.create_array(
        name,
        shape=values.shape,
        chunks=values.shape if values.ndim else "auto",
        # text (feature labels) as Zarr's variable-length UTF-8 strings, which xarray reads
        dtype=str if values.dtype.kind == "U" else values.dtype,
        dimension_names=list(dims if dims is not None else [name]),
        compressors=checked_codecs(),
    )
    array[...] = values
    if attrs:
        array.attrs.update(dict(attrs))


def _spatial_attrs(spacing: Spacing) -> dict[str, Any]:
    """A ``y`` / ``x`` coordinate's attributes: the input's own, and its ``units``."""
    return {**spacing.attrs, "units": spacing.unit or "pixel"}


def _write_coordinates(group: zarr.Group, layout: OutputLayout) -> None:
    """``y``, ``x`` in physical units, ``feature`` labels, the batch axes' values and the CRS."""
    placement = layout.placement
    for name, spacing, length in (
        ("y", placement.y, layout.shape[-2]),
        ("x", placement.x, layout.shape[-1]),
    ):
        _create_coordinate(group, name, spacing.values(length), _spatial_attrs(spacing))
    labels = layout.feature_labels or tuple(str(i) for i in range(layout.shape[-3]))
    _create_coordinate(group, "feature", np.array(labels, dtype=str))
    for name, coordinate in placement.batch.items():
        _create_coordinate(group, name, np.asarray(coordinate.values), coordinate.attrs)
    if placement.grid_mapping is not None:
        _create_coordinate(
            group,
            placement.grid_mapping.name,
            np.array(0, dtype=np.int64),
            placement.grid_mapping.attrs,
            dims=(),
        )


def _ome_batch_axis(name: str, kind: str, coordinate: Coordinate | None, lone: bool) -> OmeAxis:
    """A batch axis for NGFF: ``z`` is a space axis, placed by its coordinates when they are
    regular; a lone other batch axis is NGFF's time axis; several have no NGFF type."""
    regular = (
        None
        if coordinate is None
        else regular_spacing(np.asarray(coordinate.values), coordinate.attrs)
    )
    if kind == "z":
        if regular is None:
            return OmeAxis(name, "space")
        return OmeAxis(name, "space", regular.unit, regular.scale, regular.translation)
    return OmeAxis(name, "time" if lone else "batch")


def _ome_axes(layout: OutputLayout) -> list[OmeAxis]:
    """The stored array's axes as NGFF sees them (see :mod:`featuremap.io.ome`)."""
    placement = layout.placement
    kinds = dict(
        zip(layout.batch_dims, layout.batch_kinds or ("n",) * len(layout.batch_dims), strict=True)
    )
    lone = sum(1 for kind in kinds.values() if kind != "z") <= 1
    axes = []
    for name in layout.dims:
        if name in ("y", "x"):
            spacing = placement.y if name == "y" else placement.x
            axes.append(OmeAxis(name, "space", spacing.unit, spacing.scale, spacing.translation))
        elif name == "feature":
            axes.append(OmeAxis(name, "channel"))
        else:
            axes.append(_ome_batch_axis(name, kinds[name], placement.batch.get(name), lone))
    return axes


def _write_weights(group: zarr.Group, weights: Sequence[LayerArrays]) -> None:
    for layer in weights:
        arrays = {"weight": (layer.weight, ["feature", "channel", "ky", "kx"])}
        if layer.bias is not None:
            arrays["bias"] = (layer.bias, ["feature"])
        for name, (values, dims) in arrays.items():
            stored = group.create_array(
                f"layers/{layer.index}/{name}",
                shape=values.shape,
                chunks=values.shape,
                dtype="float32",
                dimension_names=dims,
                compressors=checked_codecs(),
            )
            stored[...] = values


def _create_markers(group: zarr.Group, grid_shape: Sequence[int]) -> None:
    group.create_array(
        MARKERS,
        shape=tuple(grid_shape),
        chunks=(1,) * len(grid_shape),
        dtype="uint8",
        fill_value=0,
        dimension_names=[f"block_{i}" for i in range(len(grid_shape))],
        config={"write_empty_chunks": True},
        overwrite=True,
    )


def create_output(
    store: str,
    *,
    layout: OutputLayout,
    geometry_attrs: Mapping[str, Any],
    weights: Sequence[LayerArrays],
    root_attrs: Mapping[str, Any],
    overwrite: bool = False,
) -> OutputStore:
    """Create every array of a new output store; no block is written yet.

    ``geometry_attrs`` become the ``featuremap`` attributes of ``features``, ``root_attrs`` the
    root ones (provenance); the job status is written after, by the job layer.
    """
    group = _open_group(store, "w" if overwrite else "w-")
    features = group.create_array(
        FEATURES,
        shape=layout.storage_shape,
        chunks=layout.storage_chunks,
        dtype="float32",
        dimension_names=list(layout.dims),
        compressors=feature_codecs(),
        fill_value=float("nan"),  # a block never computed reads as NaN, never as zeros
        config={"write_empty_chunks": True},
    )
    features.attrs[ROOT_KEY] = dict(geometry_attrs)
    if layout.placement.grid_mapping is not None:
        # CF: the grid mapping is a coordinate of the features, so xarray and rioxarray find it
        name = layout.placement.grid_mapping.name
        features.attrs.update({"grid_mapping": name, "coordinates": name})
    _write_coordinates(group, layout)
    _write_weights(group, weights)
    _create_markers(group, layout.grid_shape)
    attrs: dict[str, Any] = {ROOT_KEY: dict(root_attrs)}
    ome = ome_multiscales(
        _ome_axes(layout), path=FEATURES, name=FEATURES, channel_labels=layout.feature_labels
    )
    if ome is not None:
        attrs["ome"] = ome
    group.attrs.update(attrs)
    return OutputStore(store, group)


def consolidate(store: str) -> OutputStore:
    """Write the consolidated metadata (for xarray) and reopen the store with it."""
    with warnings.catch_warnings():
        # zarr 3 warns that consolidated metadata is not (yet) in the v3 spec; xarray reads it
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(store)
    return OutputStore.open(store, "r+", consolidated=True)
