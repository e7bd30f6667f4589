"""A stack of layers resolved once against an input, and its in-memory execution.

:func:`resolve_stack` resolves a stack against an input ``(C, H, W)`` (``(C, D, H, W)`` for a
stack of 3-D layers: :func:`stack_ndim`) once, into a frozen
:class:`ResolvedStack`: each layer's :class:`~featuremap.engine.geometry.LayerGeometry` (padding mode
included), the cumulative receptive field, jump and offset, each layer's output shape, and the
output features' labels. Block planning, the store's attributes and the job plan all share it.

:func:`apply` and :func:`apply_stack` run layers on whole in-memory (NumPy or CuPy) arrays and
are the oracle the chunked execution must match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from featuremap._typing import Array
from featuremap.engine.geometry import LayerGeometry, Sizes, StackGeometry, compose
from featuremap.engine.kernels import array_namespace, pad
from featuremap.engine.labels import filter_label
from featuremap.engine.layers import ConvLayer, FeatureDescription, Layer, Window
from featuremap.errors import InputError

__all__ = [
    "Ranked",
    "ResolvedStack",
    "apply",
    "apply_stack",
    "as_float32",
    "feature_labels",
    "resolve_stack",
    "stack_ndim",
]

#: ``(channels, *spatial)`` of a layer's input or output: ``(C, H, W)`` or ``(C, D, H, W)``.
Shape3 = tuple[int, ...]


class Ranked(Protocol):
    """Anything that names its layer kind and spatial rank: a layer, or a pipeline's layer spec."""

    kind: ClassVar[str]

    @property
    def ndim(self) -> int | None: ...


def feature_labels(
    layers: Sequence[Layer], in_channels: int, channel_labels: Sequence[str] | None = None
) -> tuple[str, ...]:
    """A readable label per output feature of ``layers`` on ``in_channels`` channels (see
    :meth:`ResolvedStack.feature_labels`); no image size needed."""
    descriptions: list[FeatureDescription] = [{"name": f"channel {i}"} for i in range(in_channels)]
    for layer in layers:
        descriptions = layer.describe_features(descriptions, channel_labels)
    return tuple(filter_label(description) for description in descriptions)


def stack_ndim(layers: Sequence[Ranked]) -> int:
    """The spatial rank of a stack: that of its conv and pool layers (2 or 3; pointwise layers
    fit either), 2 for a stack of pointwise layers only.

    Raises
    ------
    InputError
        Where 2-D and 3-D layers are mixed.
    """
    ranks = {(index, layer.kind): layer.ndim for index, layer in enumerate(layers)}
    found = {rank for rank in ranks.values() if rank is not None}
    if len(found) > 1:
        first_2d, first_3d = (
            next(f"layers[{i}].{kind}" for (i, kind), rank in ranks.items() if rank == wanted)
            for wanted in (2, 3)
        )
        raise InputError(
            f"{first_2d} is a 2-D layer but {first_3d} is a 3-D one; a stack filters in 2-D (y, x) "
            "or in 3-D (z, y, x) throughout: give the 2-D layer a 3-D kernel (size 1 along z)"
        )
    return found.pop() if found else 2


@dataclass(frozen=True)
class ResolvedStack:
    """A stack of layers resolved once against an input ``(C, H, W)`` or ``(C, D, H, W)``.

    Attributes
    ----------
    layers : tuple of Layer
    geometries : tuple of LayerGeometry
        Each layer's resolved geometry (padding mode included), first layer first.
    stacks : tuple of StackGeometry
        The cumulative receptive field, jump and offset after each layer.
    shapes : tuple of (C, *spatial)
        What each layer produces.
    input_shape : (C, *spatial)
    """

    layers: tuple[Layer, ...]
    geometries: tuple[LayerGeometry, ...]
    stacks: tuple[StackGeometry, ...]
    shapes: tuple[Shape3, ...]
    input_shape: Shape3

    @property
    def ndim(self) -> int:
        """The number of spatial axes: 2 (``y, x``) or 3 (``z, y, x``)."""
        return len(self.input_shape) - 1

    @property
    def output_shape(self) -> Shape3:
        """``(features, *spatial_out)`` of the last layer."""
        return self.shapes[-1]

    @property
    def geometry(self) -> StackGeometry:
        """The whole stack's receptive field, jump and offset."""
        return self.stacks[-1]

    @property
    def input_sizes(self) -> tuple[Sizes, ...]:
        """The spatial size of each layer's input, first layer first."""
        sizes = [self.input_shape, *self.shapes[:-1]]
        return tuple(tuple(shape[1:]) for shape in sizes)

    def feature_labels(self, channel_labels: Sequence[str] | None = None) -> tuple[str, ...]:
        """A readable label per output feature, from the banks' filter descriptions through
        every layer (:meth:`Layer.describe_features`: a pool keeps its input's, a reduction
        names each group); ``channel_labels`` name the input channels of a per-channel bank."""
        return feature_labels(self.layers, self.input_shape[0], channel_labels)

    def describe(self) -> list[dict[str, Any]]:
        """One metadata dict per layer, each key once: what the layer is, its resolved geometry,
        the ``(C, *spatial)`` it produces and the stack's receptive field, jump and offset after it."""
        return [
            {
                **layer.describe(),
                **geometry.to_dict(),
                "output_shape": list(shape),
                **stack.to_dict(),
            }
            for layer, geometry, stack, shape in zip(
                self.layers, self.geometries, self.stacks, self.shapes, strict=True
            )
        ]


#: The largest receptive field or jump a stack may reach: output coordinates are stored as
#: float64, exact for integers up to 2**53 (a pixel grid no image comes near).
MAX_EXACT = 2**53


def _check_exact(stacks: Sequence[StackGeometry], layers: Sequence[Layer]) -> None:
    """Refuse a stack whose geometry outgrows exact float64 coordinates (strides of 2**40 in
    two layers give a jump of 2**80)."""
    for index, (stack, layer) in enumerate(zip(stacks, layers, strict=True)):
        largest = max(*stack.receptive_field, *stack.jump)
        if largest > MAX_EXACT:
            raise InputError(
                f"layers[{index}].{layer.kind}: the stack's receptive field or jump reaches "
                f"{largest} pixels, past 2**53 where output coordinates stop being exact; use "
                "smaller strides, dilations or kernels"
            )


def resolve_stack(layers: Sequence[Layer], shape: Sequence[int], in_channels: int) -> ResolvedStack:
    """Resolve a stack against an input of spatial ``shape`` (``(H, W)``, or ``(D, H, W)`` for a
    3-D stack: :func:`stack_ndim`) with ``in_channels`` channels.

    Raises
    ------
    InputError
        For an empty stack or any impossible layer, naming its place as a pipeline does
        (``layers[0].pool: ...``, counted from 0).
    """
    if not layers:
        raise InputError("the layer stack is empty; give at least one conv, pool or reduce layer")
    ndim = stack_ndim(layers)
    if len(shape) != ndim:
        raise InputError(
            f"a {ndim}-D stack needs an input with {ndim} spatial axes, got the size {tuple(shape)}"
        )
    geometries, shapes = [], []
    channels, size = in_channels, tuple(int(n) for n in shape)
    for index, layer in enumerate(layers):
        try:
            geometry = layer.geometry(size)
            channels = layer.out_channels(channels)
        except InputError as error:
            # The place as a pipeline file names it (layers counted from 0, like the YAML list).
            raise InputError(f"layers[{index}].{layer.kind}: {error}") from None
        size = geometry.output_shape(size)
        geometries.append(geometry)
        shapes.append((channels, *size))
    stacks = tuple(compose(geometries))
    _check_exact(stacks, layers)
    return ResolvedStack(
        layers=tuple(layers),
        geometries=tuple(geometries),
        stacks=stacks,
        shapes=tuple(shapes),
        input_shape=(in_channels, *(int(n) for n in shape)),
    )


def as_float32(x: Array) -> Array:
    """float32 view or copy of ``x`` (integer inputs are converted)."""
    xp = array_namespace(x)
    if x.dtype.kind not in "biuf":
        raise InputError(f"input must be a numeric array, got dtype {x.dtype}")
    with np.errstate(over="ignore"):  # an overflow is refused below, never silent
        cast = xp.asarray(x, dtype=xp.float32)
    if (
        x.dtype.kind == "f"
        and x.dtype.itemsize > 4
        and bool(xp.any(lost := xp.isinf(cast) & xp.isfinite(x)))
    ):
        largest = float(xp.max(xp.abs(x[lost])))
        raise InputError(
            f"the input holds {largest:.3g}, beyond float32's range (+-3.4e38) that features "
            "are computed in: it would become inf; rescale the input"
        )
    return cast


def apply(layer: Layer, x: Array, ndim: int | None = None) -> Array:
    """Run one layer on a whole in-memory array ``(..., C, *spatial)``: pad at the border,
    compute. ``ndim``: the spatial rank, by default the layer's own (2 for a pointwise layer)."""
    x = as_float32(x)
    ndim = ndim or layer.ndim or 2
    if x.ndim < ndim + 1:
        names = ", ".join(("z", "y", "x")[-ndim:])
        raise InputError(
            f"input must have shape (..., channels, {names}), got shape {tuple(x.shape)}"
        )
    layer.out_channels(x.shape[-ndim - 1])
    size = tuple(int(n) for n in x.shape[-ndim:])
    geometry = layer.geometry(size)
    window = Window((0,) * ndim, size)
    if isinstance(layer, ConvLayer) and _zeros(geometry.padding_mode):
        return layer.apply_zero_padded(x, geometry.padding, window)  # no padded copy first
    padded = pad(x, geometry.padding, geometry.padding_mode, layer.pad_value)
    return layer.apply_padded(padded, window)


def _zeros(mode: Any) -> bool:
    """Whether a border ``mode`` (one, or one per axis) is zeros on every axis."""
    return all(m == "zeros" for m in ((mode,) if isinstance(mode, str) else mode))


def apply_stack(layers: Sequence[Layer], x: Array) -> Array:
    """Run a stack of layers on a whole in-memory array, layer by layer."""
    ndim = stack_ndim(layers)
    for index, layer in enumerate(layers):
        try:
            x = apply(layer, x, ndim)
        except InputError as error:
            raise InputError(f"layers[{index}].{layer.kind}: {error}") from None
    return x
