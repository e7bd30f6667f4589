"""``featuremap.apply``: a pipeline on an xarray ``DataArray``, lazily, as ``run`` runs it.

The pipeline is read as ``run --input`` reads it (its axes, region, channels and output dtype;
the object replaces its store). The DataArray's axes are read as for a store (:mod:`featuremap.io.axes`: ``axes=``, else its
dimension names through the vocabulary), its pixels placed by its regular 1-D coordinates
(descending ones included) and its CRS (a CF ``grid_mapping`` variable such as rioxarray's
``spatial_ref``, among the coordinates or the Dataset's variables, or rioxarray's ``.rio.crs``)
carried along -- a CRS named but not found is a :class:`~featuremap.errors.CRSWarning`, never
silently dropped. The result is a lazy, Dask-backed DataArray
named ``features``, ``(*batch, feature, y, x)`` (``(*batch, feature, z, y, x)`` for a stack of
3-D layers, which filters along the input's ``z``), exactly as ``featuremap.open(store).to_xarray()``
reads a job's store for the same input: the input's batch axes under their own names with their
coordinates, the image plane as ``y`` / ``x`` at ``translation + scale * (offset + i * jump)``
(with the input coordinates' attributes and units), readable feature labels, the CRS coordinate,
and the same geometry attributes (:func:`~featuremap.io.placement.geometry_attrs`).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featuremap.arrays.dask import blockwise_stack
from featuremap.engine.geometry import axis_names
from featuremap.engine.layers import LAYER_TYPES
from featuremap.engine.stack import ResolvedStack, resolve_stack, stack_ndim
from featuremap.errors import CRSWarning, InputError
from featuremap.io.axes import Axes, AxesSpec, parse_axes_spec, resolve_axes
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
from featuremap.io.selection import channel_indices, region_intervals
from featuremap.pipeline.pipeline import Pipeline, load_pipeline

__all__ = ["apply", "is_dataarray"]


def is_dataarray(value: object) -> bool:
    """Whether ``value`` is an ``xarray.DataArray`` (without importing xarray for other values)."""
    return _is_xarray(value, "DataArray")


def _is_xarray(value: object, kind: str) -> bool:
    return type(value).__name__ == kind and type(value).__module__.startswith("xarray")


@dataclass(frozen=True)
class _Recipe:
    """What ``apply`` takes from a pipeline, as ``run --input`` does: the layers (built for the
    channels and pixel size read), the axes, the region and channels read, the stored dtype."""

    build: Callable[[int, tuple[float, ...] | None], Sequence[Any]]
    ndim: int
    axes: AxesSpec | None = None
    region: Mapping[str, Any] = field(default_factory=dict)
    channels: tuple[int | str, ...] | None = None
    dtype: str = "float32"


def _recipe(pipeline_or_layers: Any) -> _Recipe:
    """The :class:`_Recipe` of a pipeline (file, mapping or :class:`Pipeline`) or of ready-made
    layers (everything read, float32)."""
    if isinstance(pipeline_or_layers, LAYER_TYPES):
        pipeline_or_layers = [pipeline_or_layers]
    if isinstance(pipeline_or_layers, Sequence) and not isinstance(pipeline_or_layers, str):
        layers = list(pipeline_or_layers)
        if not all(isinstance(layer, LAYER_TYPES) for layer in layers):
            raise InputError(
                "apply needs a pipeline (a YAML file, a mapping, a Pipeline) or a list of layers "
                "(featuremap.layers: ConvLayer, PoolLayer, ReduceLayer, ...)"
            )
        return _Recipe(lambda channels, spacing: layers, stack_ndim(layers))
    pipeline = (
        pipeline_or_layers
        if isinstance(pipeline_or_layers, Pipeline)
        else load_pipeline(pipeline_or_layers)
    )
    spec = pipeline.input
    return _Recipe(
        pipeline.build_layers,
        pipeline.ndim,
        spec.axes,
        spec.region,
        spec.channels,
        pipeline.output.dtype,
    )


def _data_array(obj: Any, array: str | None) -> tuple[Any, Any]:
    """``(DataArray, Dataset or None)``: ``obj`` itself, or the variable ``array`` of a Dataset
    (else its only data variable, as ``run`` picks it)."""
    if is_dataarray(obj):
        return obj, None
    if not _is_xarray(obj, "Dataset"):
        raise InputError(f"apply needs an xarray.DataArray or Dataset, got {type(obj).__name__}")
    mappings = {str(v.attrs.get("grid_mapping")) for v in obj.data_vars.values()}
    candidates = [
        str(name)
        for name, variable in obj.data_vars.items()
        if variable.ndim >= 2 and str(name) not in mappings
    ]
    if array is None and len(candidates) != 1:
        raise InputError(
            f"the Dataset holds {len(candidates)} data variables ({', '.join(candidates) or 'none'}); "
            "choose one with apply(ds, pipeline, array=NAME)"
        )
    name = array if array is not None else candidates[0]
    if name not in obj.data_vars:
        raise InputError(
            f"array {name!r} is not a data variable of the Dataset "
            f"(it holds: {', '.join(candidates) or 'none'})"
        )
    return obj[name], obj


def _select(obj: Any, axes: Axes, recipe: _Recipe) -> Any:
    """``input.region`` and ``input.channels`` applied, as :func:`featuremap.io.open_input`
    reads them (the coordinates follow, so the placement includes the region's origin)."""
    intervals = region_intervals(axes, obj.shape, recipe.region)
    index: dict[Any, Any] = {
        obj.dims[axis]: slice(start, stop)
        for axis, (start, stop) in enumerate(intervals)
        if (start, stop) != (0, obj.shape[axis])
    }
    if axes.channel is not None and recipe.channels is not None:
        dim = obj.dims[axes.channel]
        labels = [str(v) for v in obj.coords[dim].values] if dim in obj.coords else None
        index[dim] = list(channel_indices(recipe.channels, obj.shape[axes.channel], labels) or ())
    return obj.isel(index) if index else obj


def _spacing(obj: Any, dim: str) -> Spacing:
    coordinate = obj.coords.get(dim)
    if coordinate is None or coordinate.ndim != 1:
        return Spacing()
    return regular_spacing(np.asarray(coordinate.values), coordinate.attrs) or Spacing()


#: Why a CRS named by ``grid_mapping`` can be missing, and the two ways to keep it.
_LOST_CRS = (
    "{name!r} names its CRS grid_mapping {mapping!r}, which it does not carry (xarray drops it "
    "from a variable taken out of its Dataset), so the features have no CRS; pass the Dataset, "
    "featuremap.apply(ds, ...), or open it with decode_coords='all'"
)


def _grid_mapping(obj: Any, dataset: Any) -> GridMapping | None:
    """The CRS, as ``run`` finds it in a store: the CF grid-mapping variable the DataArray
    names (``attrs`` or ``encoding``; rioxarray's ``spatial_ref``, ``crs``) among its
    coordinates or the Dataset's variables, a ``crs`` WKT attribute, or rioxarray's ``.rio.crs``.
    Warns (:class:`CRSWarning`) when a named mapping is nowhere to be found."""
    named = [obj.attrs.get("grid_mapping"), obj.encoding.get("grid_mapping")]
    for name in (*named, "spatial_ref", "crs"):
        for variables in (obj.coords, {} if dataset is None else dataset.variables):
            if isinstance(name, str) and name in variables and variables[name].ndim == 0:
                return GridMapping(name, meaning_attrs(variables[name].attrs))
    if isinstance(obj.attrs.get("crs"), str):
        return GridMapping.from_wkt(obj.attrs["crs"])
    crs = _rio_crs(obj)
    if crs is not None:
        return GridMapping.from_wkt(crs)
    reference = next((name for name in named if isinstance(name, str)), None)
    if reference is not None:
        warnings.warn(_LOST_CRS.format(name=obj.name, mapping=reference), CRSWarning, stacklevel=3)
    return None


def _rio_crs(obj: Any) -> str | None:
    """rioxarray's CRS of ``obj`` as WKT, when rioxarray is in use (never imported here)."""
    if "rioxarray" not in sys.modules:
        return None
    crs = obj.rio.crs
    return None if crs is None else str(crs.to_wkt())


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


def apply(obj: Any, pipeline_or_layers: Any, *, axes: Any = None, array: str | None = None) -> Any:
    """Apply a pipeline's layers (or a list of layers) to a DataArray, lazily, as ``run`` would.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        NumPy or Dask backed; any axis order (channel-last included). From a Dataset, the
        variable ``array`` (else its only data variable) is read, and its CRS is found among
        the Dataset's variables.
    pipeline_or_layers : Pipeline, mapping, path, layer or sequence of layers
        What to apply. A pipeline is read as ``run --input`` reads it: its ``input.axes``,
        ``input.region`` and ``input.channels`` select what is read, its ``output.dtype`` is
        the result's dtype; its stores and ``input.array`` (names in its own store) are not used.
    axes : str, list or mapping, optional
        What each axis is, as ``input.axes`` (``"tyxc"``, ``{"band": "c"}``); default: the
        pipeline's, else the dimension names through the axes vocabulary.
    array : str, optional
        The data variable of a Dataset ``obj`` (as ``--array``).

    Returns
    -------
    xarray.DataArray
        Lazy (Dask), named ``features``, dims ``(*batch, "c", "y", "x")`` with the batch axes
        named as a store names them (:func:`featuremap.io.layout.output_batch_names`: ``t`` and
        ``z`` where the axes fit OME-NGFF, else the input's names; the image plane is ``y`` /
        ``x`` whatever the input calls it), coordinates composed (``translation + scale *
        (offset + i * jump)``, in the CRS's units when the coordinates name none), feature
        labels, the CRS coordinate, and the geometry in ``attrs`` -- what
        ``featuremap.open(store).to_xarray()`` gives for a job's store of the same input and
        pipeline.

    Warns
    -----
    CRSWarning
        When the DataArray names a ``grid_mapping`` it does not carry (a variable taken out of
        its Dataset): the result then has no CRS.
    """
    import xarray as xr

    recipe = _recipe(pipeline_or_layers)
    obj, dataset = _data_array(obj, array)
    spec = parse_axes_spec(axes) if axes is not None else recipe.axes
    resolved = resolve_axes(
        obj.ndim, spec=spec, names=[str(d) for d in obj.dims], spatial_ndim=recipe.ndim
    )
    obj = _select(obj, resolved, recipe)
    ndim = recipe.ndim
    data = _as_dask(obj, resolved)
    channels = int(data.shape[-ndim - 1])
    placement = Placement(
        y=_spacing(obj, str(obj.dims[resolved.y])),
        x=_spacing(obj, str(obj.dims[resolved.x])),
        grid_mapping=_grid_mapping(obj, dataset),
        z=_spacing(obj, str(obj.dims[resolved.z])) if ndim == 3 else None,
    ).with_crs_units()
    layers = tuple(recipe.build(channels, placement.physical_spacing))
    stack = resolve_stack(layers, data.shape[-ndim:], channels)
    channel_labels = None
    if resolved.channel is not None and obj.dims[resolved.channel] in obj.coords:
        channel_labels = [str(v) for v in obj.coords[obj.dims[resolved.channel]].values]
    labels = stack.feature_labels(channel_labels)
    out = output_placement(stack.geometry, placement)
    result = blockwise_stack(data, stack).astype(recipe.dtype)
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
