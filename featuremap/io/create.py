"""Creating an output store: the job record first, then ``features`` (sharded when large), the
coordinates, the weights, the pyramid's levels, the packed done-markers, the attributes and
OME-NGFF metadata, all in the layout's :class:`~featuremap.io.formats.StoreFormat` (Zarr format 3
or 2, checksum or not)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import zarr

from featuremap.engine.geometry import axis_names
from featuremap.io._paths import is_url, replacing
from featuremap.io.codec_choice import apply_decision, decide_codecs
from featuremap.io.formats import StoreFormat
from featuremap.io.layout import (
    DISPLAY,
    FEATURE_AXIS,
    FEATURES,
    JOB_GROUP,
    MARKERS,
    ROOT_KEY,
    OutputLayout,
    feature_codecs,
)
from featuremap.io.markers import create_markers
from featuremap.io.ome import OmeAxis, ngff_attributes, ome_multiscales
from featuremap.io.output import OutputStore, open_group
from featuremap.io.placement import (
    TIME_UNITS,
    Coordinate,
    Spacing,
    ngff_unit,
    regular_spacing,
    spatial_attrs,
)
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
    store_format: StoreFormat,
    name: str,
    values: np.ndarray,
    attrs: Mapping[str, Any] | None = None,
    dims: Sequence[str] | None = None,
) -> None:
    array = group.create_array(
        name,
        shape=values.shape,
        chunks=values.shape if values.ndim else "auto",
        # text (feature labels) in the type the format's readers share (StoreFormat.text_dtype)
        dtype=store_format.text_dtype(values) if values.dtype.kind == "U" else values.dtype,
        compressors=store_format.small_compressors(),
        **store_format.naming(dims if dims is not None else [name]),
        **store_format.unmasked(),
    )
    array[...] = values
    if attrs:
        array.attrs.update(dict(attrs))


def _write_coordinates(group: zarr.Group, layout: OutputLayout) -> None:
    """``y``, ``x`` (and ``z`` for a volume) in physical units, ``feature`` labels, the batch
    axes' values and the CRS."""
    placement, store_format = layout.placement, layout.store_format
    for name, spacing, length in _spatial(layout):
        _create_coordinate(
            group, store_format, name, spacing.values(length), spatial_attrs(spacing)
        )
    features = layout.shape[-layout.ndim - 1]
    labels = layout.feature_labels or tuple(str(i) for i in range(features))
    _create_coordinate(group, store_format, FEATURE_AXIS, np.array(labels, dtype=str))
    for name, coordinate in placement.batch.items():
        _create_coordinate(
            group, store_format, name, np.asarray(coordinate.values), coordinate.attrs
        )
    if placement.grid_mapping is not None:
        _create_coordinate(
            group,
            store_format,
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


def _batch_spacing(coordinate: Coordinate | None, kind: str) -> Spacing | None:
    """The regular spacing of a batch axis's coordinates in an NGFF unit of its kind (space for
    ``z``, time otherwise), or ``None``. CF times (``seconds since 2000-01-01``) count in their
    unit from the epoch."""
    if coordinate is None:
        return None
    regular = regular_spacing(np.asarray(coordinate.values), coordinate.attrs)
    if regular is None or regular.unit is None:
        return None
    unit = ngff_unit(regular.unit.split(" since ")[0])
    if unit is None or (unit in TIME_UNITS) != (kind != "z"):
        return None
    return replace(regular, unit=unit)


def _ome_batch_axis(name: str, kind: str, coordinate: Coordinate | None, lone: bool) -> OmeAxis:
    """A batch axis for NGFF: ``z`` is a space axis, a lone other batch axis is NGFF's time
    axis, each placed by its coordinates when they are regular and have a unit NGFF names;
    several non-``z`` batch axes have no NGFF type."""
    kind_name = "space" if kind == "z" else "time" if lone else "batch"
    spacing = _batch_spacing(coordinate, kind)
    if spacing is None:
        return OmeAxis(name, kind_name)
    return OmeAxis(name, kind_name, spacing.unit, spacing.scale, spacing.translation)


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
        elif name == FEATURE_AXIS:
            axes.append(OmeAxis(name, "channel"))
        else:
            axes.append(_ome_batch_axis(name, kinds[name], placement.batch.get(name), lone))
    return axes


def _write_weights(
    group: zarr.Group, weights: Sequence[LayerArrays], store_format: StoreFormat
) -> None:
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
                compressors=store_format.small_compressors(),
                **store_format.naming(dims),
                **store_format.unmasked(),
            )
            stored[...] = values


def _create_features(
    group: zarr.Group, path: str, layout: OutputLayout, geometry_attrs: Mapping[str, Any]
) -> None:
    """An empty features array at ``path`` laid out by ``layout``, its geometry in its attributes."""
    features = group.create_array(
        path,
        shape=layout.storage_shape,
        dtype=layout.dtype,
        **layout.store_format.chunking(
            layout.storage_chunks,
            layout.storage_shards,
            feature_codecs(layout.codec, layout.codec_level, layout.store_format),
        ),
        fill_value=float("nan"),  # a block never computed reads as NaN, never as zeros
        config={"write_empty_chunks": True},
        **layout.store_format.naming(layout.dims),
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
    store_format = layout.store_format
    if layout.codec == "auto":  # a layout no job planned: no sample, auto's unsampled choice
        layout = apply_decision(layout, decide_codecs(layout, None, object_store=is_url(store)))
    attrs: dict[str, Any] = {ROOT_KEY: dict(root_attrs)}
    ome = _ome(layout)
    if ome is not None:
        attrs.update(ngff_attributes(ome, store_format.ngff_version))
    # NaN and Infinity are not JSON: refused before anything is written (the job's planning
    # refuses their causes with a message of its own; this is the last guard)
    json.dumps([attrs, dict(geometry_attrs), dict(job_attrs)], allow_nan=False, default=str)
    with replacing(store) if overwrite else nullcontext(False) as set_aside:
        # a local store replaced was moved aside whole: the path is free ("w-")
        in_place = overwrite and not set_aside
        group = open_group(store, "w" if in_place else "w-", zarr_format=store_format.zarr_format)
        _create_arrays(group, layout, geometry_attrs, weights, attrs, job_attrs)
    return OutputStore(store, group)


def _create_arrays(
    group: zarr.Group,
    layout: OutputLayout,
    geometry_attrs: Mapping[str, Any],
    weights: Sequence[LayerArrays],
    attrs: Mapping[str, Any],
    job_attrs: Mapping[str, Any],
) -> None:
    store_format = layout.store_format
    group.create_group(JOB_GROUP, attributes={**job_attrs, "grid": list(layout.grid_shape)})
    _create_features(group, FEATURES, layout, geometry_attrs)
    _write_coordinates(group, layout)
    _write_weights(group, weights, store_format)
    if layout.pyramid is not None:
        _create_levels(group, layout.pyramid, geometry_attrs)
    create_markers(group, MARKERS, layout.blocks_total, store_format)
    group.create_group(DISPLAY)
    group.attrs.update(attrs)
