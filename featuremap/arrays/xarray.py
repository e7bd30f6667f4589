"""``featuremap.apply``: a layer stack on an xarray ``DataArray``, lazily, coordinates composed.

The DataArray's axes are read as for a store (:mod:`featuremap.io.axes`: ``axes=``, else its
dimension names through the vocabulary), its pixels placed by its regular 1-D coordinates
(descending ones included) and its CRS (a CF ``grid_mapping`` coordinate such as rioxarray's
``spatial_ref``) carried along. The result is a lazy, Dask-backed DataArray
named ``features``, ``(*batch, feature, y, x)`` (``(*batch, feature, z, y, x)`` for a stack of
3-D layers, which filters along the input's ``z``), exactly as ``featuremap.open(store).to_xarray()``
reads a job's store for the same input: the input's batch axes under their own names with their
coordinates, the image plane as ``y`` / ``x`` at ``translation + scale * (offset + i * jump)``
(with the input coordinates' attributes and units), readable feature labels, the CRS coordinate,
and the same geometry attributes (:func:`~featuremap.io.placement.geometry_attrs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from featuremap.arrays.dask import blockwise_stack
from featuremap.engine.geometry import axis_names
from featuremap.engine.layers import LAYER_TYPES
from featuremap.engine.stack import ResolvedStack, resolve_stack, stack_ndim
from featuremap.errors import InputError
from featuremap.io.axes import Axes, parse_axes_spec, resolve_axes
from featuremap.io.layout import FEATURE_AXIS, FEATURES, feature_dims, output_batch_names
from featuremap.io.placement import (
    GridMapping,
    Placement,
    Spacing,
    geometry_attrs,
    meaning_attrs,
    output_placement,
    regular_spacing,
    spatial_attrs,
)
from featuremap.pipeline.pipeline import Pipeline, load_pipeline

__all__ = ["apply", "is_dataarray"]


def is_dataarray(value: object) -> bool:
    """Whether ``value`` is an ``xarray.DataArray`` (without importing xarray for other values)."""
    return type(value).__name__ == "DataArray" and type(value).__module__.startswith("xarray")


def _layers_for(pipeline_or_layers: Any) -> tuple[Any, Any, int]:
    """``(build(channels, spacing) -> layers, axes spec, spatial rank)`` from a pipeline (file,
    mapping or :class:`Pipeline`) or ready-made layers."""
    if isinstance(pipeline_or_layers, LAYER_TYPES):
        pipeline_or_layers = [pipeline_or_layers]
    if isinstance(pipeline_or_layers, Sequence) and not isinstance(pipeline_or_layers, str):
        layers = list(pipeline_or_layers)
        if not all(isinstance(layer, LAYER_TYPES) for layer in layers):
            raise InputError(
                "apply needs a pipeline (a YAML file, a mapping, a Pipeline) or a list of layers "
                "(featuremap.layers: ConvLayer, PoolLayer, ReduceLayer, ...)"
            )
        return (lambda channels, spacing: layers), None, stack_ndim(layers)
    pipeline = (
        pipeline_or_layers
        if isinstance(pipeline_or_layers, Pipeline)
        else load_pipeline(pipeline_or_layers)
    )
    return pipeline.build_layers, pipeline.input.axes, pipeline.ndim


def _spacing(obj: Any, dim: str) -> Spacing:
    coordinate = obj.coords.get(dim)
    if coordinate is None or coordinate.ndim != 1:
        return Spacing()
    return regular_spacing(np.asarray(coordinate.values), coordinate.attrs) or Spacing()


def _grid_mapping(obj: Any) -> GridMapping | None:
    """A CF grid-mapping coordinate (rioxarray's ``spatial_ref``), as the DataArray names it."""
    for name in (
        obj.attrs.get("grid_mapping"),
        obj.encoding.get("grid_mapping"),
        "spatial_ref",
        "crs",
    ):
        if isinstance(name, str) and name in obj.coords and obj.coords[name].ndim == 0:
            return GridMapping(name, meaning_attrs(obj.coords[name].attrs))
    return None


def _as_dask(obj: Any, axes: Axes) -> Any:
    """The DataArray's data as a Dask array ``(*batch, C, *spatial)`` (NumPy data is wrapped,
    not copied; the channel axis is one chunk)."""
    import dask.array as da

    data = obj.data
    if not isinstance(data, da.Array):
        data = da.from_array(data, chunks="auto" if axes.channel is None else {axes.channel: -1})
    data = data.transpose(axes.order)
    if axes.channel is not None:
        return data
    return data[(..., None, *(slice(None),) * axes.spatial_ndim)]


def _coords(
    obj: Any, axes: Axes, stack: ResolvedStack, placement: Placement, labels: Sequence[str]
) -> dict[str, Any]:
    import xarray as xr

    coords: dict[str, Any] = {
        name: obj.coords[name]
        for name in (axes.axes[i].name for i in axes.batch)
        if name in obj.coords
    }
    for dim, spacing, length in zip(
        axis_names(stack.ndim), placement.spatial, stack.output_shape[1:], strict=True
    ):
        coords[dim] = xr.Variable(dim, spacing.values(length), spatial_attrs(spacing))
    coords[FEATURE_AXIS] = xr.Variable(FEATURE_AXIS, np.array(labels, dtype=str))
    if placement.grid_mapping is not None:
        coords[placement.grid_mapping.name] = xr.Variable((), 0, dict(placement.grid_mapping.attrs))
    return coords


def apply(obj: Any, pipeline_or_layers: Any, *, axes: Any = None) -> Any:
    """Apply a pipeline's layers (or a list of layers) to a DataArray, lazily.

    Parameters
    ----------
    obj : xarray.DataArray
        NumPy or Dask backed; any axis order (channel-last included).
    pipeline_or_layers : Pipeline, mapping, path, layer or sequence of layers
        What to apply; a pipeline's ``input``/``output`` stores are ignored, its ``input.axes``
        is used unless ``axes`` is given.
    axes : str, list or mapping, optional
        What each axis is, as ``input.axes`` (``"tyxc"``, ``{"band": "c"}``); default: the
        dimension names through the axes vocabulary.

    Returns
    -------
    xarray.DataArray
        Lazy (Dask), named ``features``, dims ``(*batch, "c", "y", "x")`` with the batch axes
        named as a store names them (:func:`featuremap.io.layout.output_batch_names`: ``t`` and
        ``z`` where the axes fit OME-NGFF, else the input's names; the image plane is ``y`` /
        ``x`` whatever the input calls it), coordinates composed (``translation + scale * (offset + i * jump)``),
        feature labels, the CRS coordinate, and the geometry in ``attrs`` -- what
        ``featuremap.open(store).to_xarray()`` gives for a job's store of the same input.
    """
    if not is_dataarray(obj):
        raise InputError(f"apply needs an xarray.DataArray, got {type(obj).__name__}")
    import xarray as xr

    build, pipeline_axes, ndim = _layers_for(pipeline_or_layers)
    spec = parse_axes_spec(axes) if axes is not None else pipeline_axes
    resolved = resolve_axes(
        obj.ndim, spec=spec, names=[str(d) for d in obj.dims], spatial_ndim=ndim
    )
    data = _as_dask(obj, resolved)
    channels = int(data.shape[-ndim - 1])
    placement = Placement(
        y=_spacing(obj, str(obj.dims[resolved.y])),
        x=_spacing(obj, str(obj.dims[resolved.x])),
        grid_mapping=_grid_mapping(obj),
        z=_spacing(obj, str(obj.dims[resolved.z])) if ndim == 3 else None,
    )
    layers = tuple(build(channels, placement.physical_spacing))
    stack = resolve_stack(layers, data.shape[-ndim:], channels)
    channel_labels = None
    if resolved.channel is not None and obj.dims[resolved.channel] in obj.coords:
        channel_labels = [str(v) for v in obj.coords[obj.dims[resolved.channel]].values]
    labels = stack.feature_labels(channel_labels)
    out = output_placement(stack.geometry, placement)
    result = blockwise_stack(data, stack)
    batch = [resolved.axes[i].name for i in resolved.batch]
    dims = [*batch, *feature_dims(ndim)]
    attrs = geometry_attrs(stack, placement)
    if out.grid_mapping is not None:
        attrs["grid_mapping"] = out.grid_mapping.name
    features = xr.DataArray(
        result,
        dims=dims,
        coords=_coords(obj, resolved, stack, out, labels),
        name=FEATURES,
        attrs=attrs,
    )
    # the batch axes named as a store names them (NGFF's t / z where the axes fit NGFF)
    names = output_batch_names(batch, [resolved.axes[i].kind for i in resolved.batch], ndim)
    return features.rename({old: new for old, new in zip(batch, names, strict=True) if old != new})
