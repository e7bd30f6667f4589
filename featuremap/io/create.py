"""Creating an output store: the job record first, then ``features`` (sharded when large), the
coordinates, the weights, the pyramid's levels, the packed done-markers, the attributes and
OME-NGFF metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from featuremap.engine.geometry import axis_names
from featuremap.io.layout import (
    FEATURES,
    JOB_GROUP,
    MARKERS,
    ROOT_KEY,
    OutputLayout,
    checked_codecs,
    feature_codecs,
)
from featuremap.io.markers import create_markers
from featuremap.io.ome import OmeAxis, ome_multiscales
from featuremap.io.output import OutputStore, open_group
from featuremap.io.placement import Coordinate, Spacing, regular_spacing, spatial_attrs
from featuremap.io.pyramid import Pyramid, ome_datasets

__all__ = ["LayerArrays", "create_output"]


@dataclass(frozen=True)
class LayerArrays:
    """The weights (and bias) a conv layer was run with, stored under ``layers/<index>/``."""

    index: int
    weight: np.ndarray
    bias: np.ndarray | None


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


def _write_coordinates(group: zarr.Group, layout: OutputLayout) -> None:
    """``y``, ``x`` (and ``z`` for a volume) in physical units, ``feature`` labels, the batch
    axes' values and the CRS."""
    placement = layout.placement
    for name, spacing, length in _spatial(layout):
        _create_coordinate(group, name, spacing.values(length), spatial_attrs(spacing))
    features = layout.shape[-layout.ndim - 1]
    labels = layout.feature_labels or tuple(str(i) for i in range(features))
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


def _spatial(layout: OutputLayout) -> list[tuple[str, Spacing, int]]:
    """``(name, spacing, length)`` of each spatial output axis."""
    return list(
        zip(
            axis_names(layout.ndim),
            layout.placement.spatial,
            layout.shape[-layout.ndim :],
            strict=True,
        )
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
    spatial = {name: spacing for name, spacing, _ in _spatial(layout)}
    axes = []
    for name in layout.dims:
        if name in spatial:
            spacing = spatial[name]
            axes.append(OmeAxis(name, "space", spacing.unit, spacing.scale, spacing.translation))
        elif name == "feature":
            axes.append(OmeAxis(name, "channel"))
        else:
            axes.append(_ome_batch_axis(name, kinds[name], placement.batch.get(name), lone))
    return axes


def _write_weights(group: zarr.Group, weights: Sequence[LayerArrays]) -> None:
    for layer in weights:
        kernel_dims = [f"k{axis}" for axis in axis_names(layer.weight.ndim - 2)]
        arrays = {"weight": (layer.weight, ["feature", "channel", *kernel_dims])}
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


def _create_features(
    group: zarr.Group, path: str, layout: OutputLayout, geometry_attrs: Mapping[str, Any]
) -> None:
    """An empty features array at ``path`` laid out by ``layout``, its geometry in its attributes."""
    features = group.create_array(
        path,
        shape=layout.storage_shape,
        chunks=layout.storage_chunks,
        shards=layout.storage_shards,
        dtype=layout.dtype,
        dimension_names=list(layout.dims),
        compressors=feature_codecs(layout.codec, layout.codec_level),
        fill_value=float("nan"),  # a block never computed reads as NaN, never as zeros
        config={"write_empty_chunks": True},
    )
    features.attrs[ROOT_KEY] = dict(geometry_attrs)
    if layout.placement.grid_mapping is not None:
        # CF: the grid mapping is a coordinate of the features, so xarray and rioxarray find it
        name = layout.placement.grid_mapping.name
        features.attrs.update({"grid_mapping": name, "coordinates": name})


def _create_levels(group: zarr.Group, pyramid: Pyramid, geometry_attrs: Mapping[str, Any]) -> None:
    """Each level's (empty) features and its coordinates, in its own subgroup; its geometry is
    the stack's followed by the level's pool (the physical summary is level 0's only)."""
    for level in pyramid.levels:
        subgroup = group.require_group(level.group)
        attrs = {
            **{key: value for key, value in geometry_attrs.items() if key != "physical"},
            **level.layout.stack.to_dict(),
            "pyramid": {"level": level.index, "method": pyramid.method},
        }
        _create_features(group, level.path, level.layout, attrs)
        _write_coordinates(subgroup, level.layout)


def _ome(layout: OutputLayout) -> dict[str, Any] | None:
    """The NGFF attributes: level 0, then the pyramid's levels."""
    ome = ome_multiscales(
        _ome_axes(layout), path=FEATURES, name=FEATURES, channel_labels=layout.feature_labels
    )
    if ome is None or layout.pyramid is None:
        return ome
    levels = [(level.path, _ome_axes(level.layout)) for level in layout.pyramid.levels]
    return ome_datasets(ome, layout.pyramid.method, levels)


def create_output(
    store: str,
    *,
    layout: OutputLayout,
    geometry_attrs: Mapping[str, Any],
    weights: Sequence[LayerArrays],
    root_attrs: Mapping[str, Any],
    job_attrs: Mapping[str, Any],
    overwrite: bool = False,
) -> OutputStore:
    """Create every array of a new output store; no block is written yet.

    ``job_attrs`` (the owner, whose id is the fencing token) are written first, so a job that
    lost this path to us finds our token before anything else of ours; ``geometry_attrs`` become
    the ``featuremap`` attributes of ``features``, ``root_attrs`` the root ones (provenance).
    Creating costs the same at 10^3 and 10^8 blocks: no chunk and no marker is written.
    """
    group = open_group(store, "w" if overwrite else "w-")
    group.create_group(JOB_GROUP, attributes={**job_attrs, "grid": list(layout.grid_shape)})
    _create_features(group, FEATURES, layout, geometry_attrs)
    _write_coordinates(group, layout)
    _write_weights(group, weights)
    if layout.pyramid is not None:
        _create_levels(group, layout.pyramid, geometry_attrs)
    create_markers(group, MARKERS, layout.blocks_total)
    attrs: dict[str, Any] = {ROOT_KEY: dict(root_attrs)}
    ome = _ome(layout)
    if ome is not None:
        attrs["ome"] = ome
    group.attrs.update(attrs)
    return OutputStore(store, group)
