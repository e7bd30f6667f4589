"""The fused per-block compute of a resolved stack: pure NumPy/CuPy, no Dask, no Zarr.

A block's *compact* input is the concatenation of the input intervals its plans read
(:func:`featuremap.engine.blockplan.plan_axis`). :func:`compute_compact` runs every layer of the
stack on it: per layer and per run of output pixels, :func:`_gather` builds the layer's virtual
padded input (borders folded at the true image border only), the layer computes on it
(:meth:`Layer.apply_padded`), and the outputs are kept compact for the next layer.

Both the lazy Dask graph (:mod:`featuremap.arrays.dask`) and the job's block tasks
(:mod:`featuremap.jobs.blocks`) call it, so the two paths compute the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence

from featuremap._typing import Array
from featuremap.engine.blockplan import AxisPlan, AxisStep, Gather, Level
from featuremap.engine.kernels import array_namespace
from featuremap.engine.layers import Layer, Window
from featuremap.engine.stack import ResolvedStack, as_float32

__all__ = ["axis_steps", "compute_compact", "concatenate"]


def axis_steps(stack: ResolvedStack) -> tuple[list[AxisStep], ...]:
    """Per spatial axis, the stack's :class:`AxisStep` s (geometry and input length of each layer)."""
    return tuple(
        [
            AxisStep(geometry.axes[axis], size[axis])
            for geometry, size in zip(stack.geometries, stack.input_sizes, strict=True)
        ]
        for axis in range(stack.ndim)
    )


def concatenate(parts: list[Array], axis: int) -> Array:
    """``parts[0]`` itself when alone (a view, no copy), else their concatenation."""
    if len(parts) == 1:
        return parts[0]
    return array_namespace(parts[0]).concatenate(parts, axis=axis)


def _take(values: Array, axis: int, start: int, stop: int) -> Array:
    index = [slice(None)] * values.ndim
    index[axis] = slice(start, stop)
    return values[tuple(index)]


def _gather(values: Array, gather: Gather, axis: int, fill: float) -> Array:
    """A run's virtual padded input along ``axis``, from the compact array ``values``."""
    xp = array_namespace(values)
    parts = []
    for segment in gather.segments:
        if segment.kind == "fill":
            shape = list(values.shape)
            shape[axis] = segment.length
            parts.append(xp.full(tuple(shape), fill, dtype=values.dtype))
            continue
        part = _take(values, axis, segment.start, segment.stop)
        if segment.kind == "reversed":
            part = xp.flip(part, axis=axis)
        elif segment.kind == "repeat":
            shape = list(part.shape)
            shape[axis] = segment.length
            part = xp.broadcast_to(part, tuple(shape))
        parts.append(part)
    return concatenate(parts, axis)


def _apply_level(layer: Layer, values: Array, levels: Sequence[Level]) -> Array:
    """One layer on every combination of runs (one run per spatial axis) of the block; the
    outputs, compact. Gathers axis by axis, outermost first, so a run's padded band along ``z``
    (or ``y``) is shared by all its runs along the axes after it."""
    size = tuple(level.size for level in levels)
    ndim = len(levels)

    def along(band: Array, axis: int, origin: tuple[int, ...]) -> Array:
        level = levels[axis]
        parts = []
        for (start, _), gather in zip(level.runs, level.gathers, strict=True):
            padded = _gather(band, gather, axis - ndim, layer.pad_value)
            if axis + 1 < ndim:
                parts.append(along(padded, axis + 1, (*origin, start)))
            else:
                parts.append(layer.apply_padded(padded, Window((*origin, start), size)))
        return concatenate(parts, axis - ndim)

    return along(values, 0, ())


def compute_compact(layers: Sequence[Layer], plans: Sequence[AxisPlan], values: Array) -> Array:
    """The fused stack on one output block, from its compact input ``values`` -- the
    concatenation of the input pieces its plans read (one :class:`AxisPlan` per spatial axis:
    the product of their ``reads``)."""
    values = as_float32(values)
    for index, layer in enumerate(layers):
        values = _apply_level(layer, values, [plan.levels[index] for plan in plans])
    return values
