"""Layer specifications: what one conv, pool or reduce layer computes, and where.

A layer is a frozen, validated description (weights included for conv). It knows

* its geometry for a given input size (:meth:`geometry`, resolving ``"same"`` padding),
* how its border is padded (:attr:`pad_mode`, :attr:`pad_value`), which applies at the true image
  border only — the blockwise executor pads there and nowhere else, and
* how to compute on an input block that is already padded (:meth:`apply_padded`).

:func:`apply` and :func:`apply_stack` run layers on whole in-memory (NumPy or CuPy) arrays and
are the oracle the chunked execution must match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from featuremap._kernels import (
    ACTIVATIONS,
    activate,
    array_namespace,
    avg_pool_valid,
    check_fits,
    conv2d_valid,
    max_pool_valid,
    pad,
)
from featuremap.errors import InputError, describe
from featuremap.geometry import (
    LayerGeometry,
    Padding,
    StackGeometry,
    compose,
    parse_pair,
    parse_padding,
    parse_padding_mode,
    resolve_layer,
)

__all__ = [
    "ConvLayer",
    "Layer",
    "PoolLayer",
    "ReduceLayer",
    "apply",
    "apply_stack",
    "stack_geometry",
]

POOL_OPS = ("max", "avg")
REDUCE_OPS = ("max", "mean", "sum")


def parse_activation(value: Any) -> str:
    if value not in ACTIVATIONS:
        raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {describe(value)}")
    return value


@dataclass(frozen=True, eq=False)
class ConvLayer:
    """A convolution layer with ``torch.nn.functional.conv2d`` semantics plus an activation.

    Build it with :meth:`create`, which validates and normalises every parameter.
    """

    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: Padding = ((0, 0), (0, 0))
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    padding_mode: str = "zeros"
    activation: str = "none"
    bank: Mapping[str, Any] = field(default_factory=dict)

    kind = "conv"

    @classmethod
    def create(
        cls,
        weight: Any,
        bias: Any = None,
        *,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: Any = 1,
        padding_mode: str = "zeros",
        activation: str = "none",
        flip: bool = False,
        bank: Mapping[str, Any] | None = None,
    ) -> ConvLayer:
        """Validate parameters; ``flip=True`` turns the cross-correlation into a true convolution."""
        weight = _as_float32_host(weight, "weight")
        if weight.ndim != 4 or 0 in weight.shape:
            raise InputError(
                "weight must have shape (out_channels, in_channels/groups, kh, kw), every size >= 1, "
                f"got shape {weight.shape}"
            )
        if flip:
            weight = np.ascontiguousarray(weight[..., ::-1, ::-1])
        if bias is not None:
            bias = _as_float32_host(bias, "bias")
            if bias.shape != (weight.shape[0],):
                raise InputError(
                    f"bias must have shape ({weight.shape[0]},) to match the weight's {weight.shape[0]} "
                    f"output channels, got shape {bias.shape}"
                )
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise InputError(f"groups must be a positive integer, got {describe(groups)}")
        if weight.shape[0] % groups:
            raise InputError(
                f"groups={groups} must divide the weight's {weight.shape[0]} output channels"
            )
        return cls(
            weight=weight,
            bias=bias,
            stride=parse_pair("stride", stride),
            padding=parse_padding(padding),
            dilation=parse_pair("dilation", dilation),
            groups=int(groups),
            padding_mode=parse_padding_mode(padding_mode),
            activation=parse_activation(activation),
            bank=dict(bank or {}),
        )

    @property
    def kernel_size(self) -> tuple[int, int]:
        return (int(self.weight.shape[2]), int(self.weight.shape[3]))

    @property
    def pad_mode(self) -> str:
        return self.padding_mode

    @property
    def pad_value(self) -> float:
        return 0.0

    def out_channels(self, in_channels: int) -> int:
        """Output channel count for ``in_channels`` inputs; :class:`InputError` on a mismatch."""
        expected = self.weight.shape[1] * self.groups
        if in_channels != expected:
            raise InputError(
                f"the conv layer expects {expected} input channels (weight {tuple(self.weight.shape)}, "
                f"groups={self.groups}) but its input has {in_channels}; check channel_axis or the weights"
            )
        return int(self.weight.shape[0])

    def geometry(self, shape: Sequence[int]) -> LayerGeometry:
        geometry = resolve_layer(self.kernel_size, self.stride, self.dilation, self.padding, shape)
        check_fits(self.padding_mode, geometry.padding, shape)
        return geometry

    def apply_padded(self, x: Any) -> Any:
        """Compute on a block that already carries its padding."""
        xp = array_namespace(x)
        weight = xp.asarray(self.weight)
        bias = None if self.bias is None else xp.asarray(self.bias)
        out = conv2d_valid(
            x, weight, bias, stride=self.stride, dilation=self.dilation, groups=self.groups
        )
        return activate(self.activation, out)

    def to_dict(self) -> dict[str, Any]:
        """Metadata (no weights): what goes into the output store's ``layers`` list."""
        return {
            "type": "conv",
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else [list(p) for p in self.padding],
            "dilation": list(self.dilation),
            "groups": self.groups,
            "padding_mode": self.padding_mode,
            "activation": self.activation,
            "in_channels": int(self.weight.shape[1] * self.groups),
            "out_channels": int(self.weight.shape[0]),
            "bias": self.bias is not None,
            "bank": dict(self.bank),
        }


@dataclass(frozen=True)
class PoolLayer:
    """Max or average pooling with ``max_pool2d`` / ``avg_pool2d`` (count_include_pad) semantics."""

    op: str
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: Padding = ((0, 0), (0, 0))

    kind = "pool"
    dilation = (1, 1)

    @classmethod
    def create(cls, op: str = "max", kernel_size: Any = 2, stride: Any = None, padding: Any = 0) -> PoolLayer:
        if op not in POOL_OPS:
            raise InputError(f"pool type must be one of {', '.join(POOL_OPS)}, got {describe(op)}")
        kernel = parse_pair("kernel_size", kernel_size)
        strides = kernel if stride is None else parse_pair("stride", stride)
        pads = parse_padding(padding)
        if pads != "same":
            for axis, k, (lo, hi) in zip("yx", kernel, pads):
                if max(lo, hi) * 2 > k:
                    raise InputError(
                        f"pool padding {max(lo, hi)} along {axis} must be at most half the kernel size "
                        f"{k} (PyTorch's rule: every window must hold an input pixel)"
                    )
        return cls(op, kernel, strides, pads)

    @property
    def pad_mode(self) -> str:
        return "constant"

    @property
    def pad_value(self) -> float:
        return float("-inf") if self.op == "max" else 0.0

    def out_channels(self, in_channels: int) -> int:
        return in_channels

    def geometry(self, shape: Sequence[int]) -> LayerGeometry:
        return resolve_layer(self.kernel_size, self.stride, 1, self.padding, shape)

    def apply_padded(self, x: Any) -> Any:
        pool = max_pool_valid if self.op == "max" else avg_pool_valid
        return pool(x, self.kernel_size, self.stride)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "pool",
            "op": self.op,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else [list(p) for p in self.padding],
            "dilation": [1, 1],
        }


@dataclass(frozen=True)
class ReduceLayer:
    """Reduce consecutive groups of features (e.g. MR8's max over 6 orientations); 1x1 geometry.

    ``groups`` lists the group sizes in feature order; they must add up to the input channel count.
    """

    op: str
    groups: tuple[int, ...]

    kind = "reduce"
    kernel_size = (1, 1)
    stride = (1, 1)
    dilation = (1, 1)
    padding = ((0, 0), (0, 0))
    pad_mode = "constant"
    pad_value = 0.0

    @classmethod
    def create(cls, op: str = "max", groups: Any = None) -> ReduceLayer:
        if op not in REDUCE_OPS:
            raise InputError(f"reduce op must be one of {', '.join(REDUCE_OPS)}, got {describe(op)}")
        if isinstance(groups, int) and not isinstance(groups, bool):
            groups = [groups]
        if (
            not isinstance(groups, (list, tuple))
            or not groups
            or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in groups)
        ):
            raise InputError(
                f"reduce groups must be a positive integer or a list of them, got {describe(groups)}"
            )
        return cls(op, tuple(groups))

    def _sizes(self, in_channels: int) -> tuple[int, ...]:
        """A single group size repeats over all channels; a list must cover them exactly."""
        if len(self.groups) == 1:
            if in_channels % self.groups[0]:
                raise InputError(
                    f"reduce group size {self.groups[0]} does not divide the {in_channels} input features"
                )
            return self.groups * (in_channels // self.groups[0])
        if sum(self.groups) != in_channels:
            raise InputError(
                f"reduce groups {list(self.groups)} add up to {sum(self.groups)} but the input has "
                f"{in_channels} features"
            )
        return self.groups

    def out_channels(self, in_channels: int) -> int:
        return len(self._sizes(in_channels))

    def geometry(self, shape: Sequence[int]) -> LayerGeometry:
        return LayerGeometry((1, 1))

    def apply_padded(self, x: Any) -> Any:
        xp = array_namespace(x)
        reducer = {"max": xp.max, "mean": xp.mean, "sum": xp.sum}[self.op]
        parts, start = [], 0
        for size in self._sizes(x.shape[-3]):
            parts.append(reducer(x[..., start : start + size, :, :], axis=-3, keepdims=True))
            start += size
        return xp.concatenate(parts, axis=-3)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "reduce", "op": self.op, "groups": list(self.groups),
                "kernel_size": [1, 1], "stride": [1, 1], "padding": [[0, 0], [0, 0]], "dilation": [1, 1]}


Layer = Union[ConvLayer, PoolLayer, ReduceLayer]


def _as_float32_host(value: Any, name: str) -> np.ndarray:
    if array_namespace(value) is not np:  # CuPy weights are kept on the host, moved per block
        value = value.get()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise InputError(f"{name} must be a numeric array, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


def stack_geometry(
    layers: Sequence[Layer], shape: Sequence[int], in_channels: int
) -> tuple[list[LayerGeometry], list[StackGeometry], list[tuple[int, int, int]]]:
    """Resolve a stack against an input ``(H, W)`` with ``in_channels`` channels.

    Returns per-layer resolved geometry, the cumulative stack geometry after each layer, and the
    ``(channels, H, W)`` after each layer. Raises :class:`InputError` for any impossible layer,
    naming its position.
    """
    geometries, shapes = [], []
    channels, hw = in_channels, tuple(shape)
    for index, layer in enumerate(layers):
        try:
            geometry = layer.geometry(hw)
            channels = layer.out_channels(channels)
        except InputError as error:
            raise InputError(f"layer {index + 1} ({layer.kind}): {error}") from None
        hw = geometry.output_shape(hw)
        geometries.append(geometry)
        shapes.append((channels, *hw))
    return geometries, compose(geometries), shapes


def as_float32(x: Any) -> Any:
    """float32 view or copy of ``x`` (integer inputs are converted)."""
    xp = array_namespace(x)
    if x.dtype.kind not in "biuf":
        raise InputError(f"input must be a numeric array, got dtype {x.dtype}")
    return xp.asarray(x, dtype=xp.float32)


def apply(layer: Layer, x: Any) -> Any:
    """Run one layer on a whole in-memory array ``(..., C, H, W)``: pad at the border, compute."""
    x = as_float32(x)
    if x.ndim < 3:
        raise InputError(f"input must have shape (..., channels, y, x), got shape {tuple(x.shape)}")
    layer.out_channels(x.shape[-3])
    geometry = layer.geometry(x.shape[-2:])
    padded = pad(x, geometry.padding, layer.pad_mode, layer.pad_value)
    return layer.apply_padded(padded)


def apply_stack(layers: Sequence[Layer], x: Any) -> Any:
    """Run a stack of layers on a whole in-memory array, layer by layer."""
    for index, layer in enumerate(layers):
        try:
            x = apply(layer, x)
        except InputError as error:
            raise InputError(f"layer {index + 1} ({layer.kind}): {error}") from None
    return x
