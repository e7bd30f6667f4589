"""Layer specifications: what one conv, pool or reduce layer computes, and where.

A layer is a frozen, validated description (weights included for conv), its parameters parsed
once by ``create``. It knows

* its geometry for a given input size (:meth:`geometry`, resolving ``"same"`` padding) as one
  :class:`~featuremap.geometry.LayerGeometry` that carries the padding mode too -- the border
  is filled at the true image border only, never at chunk borders, with :attr:`pad_value` where
  the mode is a constant;
* how to compute on an input block that is already padded (:meth:`apply_padded`).

A stack of layers is resolved against an input once by :func:`featuremap.stack.resolve_stack`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from featuremap._kernels import (
    activate,
    array_namespace,
    avg_pool_valid,
    check_fits,
    conv2d_valid,
    max_pool_valid,
)
from featuremap._typing import Array
from featuremap._validation import parse_choice, parse_int, parse_pair
from featuremap._vocabulary import (
    ACTIVATIONS,
    POOL_OPS,
    REDUCE_OPS,
    Activation,
    PaddingMode,
    PoolOp,
    ReduceOp,
)
from featuremap.errors import InputError, describe
from featuremap.geometry import (
    LayerGeometry,
    Padding,
    Pair,
    parse_padding,
    parse_padding_mode,
    resolve_layer,
)

__all__ = [
    "ConvLayer",
    "Layer",
    "PoolLayer",
    "ReduceLayer",
    "parse_activation",
]


def parse_activation(value: Any) -> Activation:
    """One of :data:`~featuremap._vocabulary.ACTIVATIONS`."""
    return parse_choice("activation", value, ACTIVATIONS)


def _padding_spec(padding: Padding) -> str | list[list[int]]:
    return padding if isinstance(padding, str) else [list(pair) for pair in padding]


@dataclass(frozen=True, eq=False)
class ConvLayer:
    """A convolution layer with ``torch.nn.functional.conv2d`` semantics plus an activation.

    Build it with :meth:`create`, which validates and normalises every parameter.
    """

    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: Pair = (1, 1)
    padding: Padding = ((0, 0), (0, 0))
    dilation: Pair = (1, 1)
    groups: int = 1
    padding_mode: PaddingMode = "zeros"
    activation: Activation = "none"
    bank: Mapping[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = "conv"
    pad_value: ClassVar[float] = 0.0

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
        padding_mode: Any = "zeros",
        activation: Any = "none",
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
        groups = parse_int("groups", groups, minimum=1)
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
            groups=groups,
            padding_mode=parse_padding_mode(padding_mode),
            activation=parse_activation(activation),
            bank=dict(bank or {}),
        )

    @property
    def kernel_size(self) -> Pair:
        return (int(self.weight.shape[2]), int(self.weight.shape[3]))

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
        """The layer resolved against an input ``(H, W)``; refuses borders PyTorch refuses."""
        geometry = resolve_layer(
            self.kernel_size, self.stride, self.dilation, self.padding, shape, self.padding_mode
        )
        check_fits(self.padding_mode, geometry.padding, shape)
        return geometry

    def apply_padded(self, x: Array) -> Array:
        """Compute on a block that already carries its padding."""
        xp = array_namespace(x)
        weight = xp.asarray(self.weight)
        bias = None if self.bias is None else xp.asarray(self.bias)
        out = conv2d_valid(
            x, weight, bias, stride=self.stride, dilation=self.dilation, groups=self.groups
        )
        return activate(self.activation, out)

    def describe(self) -> dict[str, Any]:
        """What the layer is besides its geometry (no weights): the store's per-layer attributes
        add the resolved :class:`LayerGeometry` to it."""
        return {
            "type": "conv",
            "padding_spec": _padding_spec(self.padding),
            "groups": self.groups,
            "activation": self.activation,
            "in_channels": int(self.weight.shape[1] * self.groups),
            "out_channels": int(self.weight.shape[0]),
            "bias": self.bias is not None,
            "bank": dict(self.bank),
        }

    def to_dict(self) -> dict[str, Any]:
        """The layer's full specification (no weights), geometry as requested."""
        return {
            **self.describe(),
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": _padding_spec(self.padding),
            "dilation": list(self.dilation),
            "padding_mode": self.padding_mode,
        }


@dataclass(frozen=True)
class PoolLayer:
    """Max or average pooling with ``max_pool2d`` / ``avg_pool2d`` (count_include_pad) semantics."""

    op: PoolOp
    kernel_size: Pair
    stride: Pair
    padding: Padding = ((0, 0), (0, 0))

    kind: ClassVar[str] = "pool"
    dilation: ClassVar[Pair] = (1, 1)

    @classmethod
    def create(
        cls, op: Any = "max", kernel_size: Any = 2, stride: Any = None, padding: Any = 0
    ) -> PoolLayer:
        parsed_op = parse_choice("pool type", op, POOL_OPS)
        kernel = parse_pair("kernel_size", kernel_size)
        strides = kernel if stride is None else parse_pair("stride", stride)
        pads = parse_padding(padding)
        if not isinstance(pads, str):
            for axis, k, (lo, hi) in zip("yx", kernel, pads, strict=True):
                if max(lo, hi) * 2 > k:
                    raise InputError(
                        f"pool padding {max(lo, hi)} along {axis} must be at most half the kernel size "
                        f"{k} (PyTorch's rule: every window must hold an input pixel)"
                    )
        return cls(parsed_op, kernel, strides, pads)

    @property
    def pad_value(self) -> float:
        return float("-inf") if self.op == "max" else 0.0

    def out_channels(self, in_channels: int) -> int:
        if in_channels < 1:  # PyTorch refuses an empty channel axis (an empty batch is fine)
            raise InputError(
                f"{self.op} pooling needs at least one channel, but its input has {in_channels}"
            )
        return in_channels

    def geometry(self, shape: Sequence[int]) -> LayerGeometry:
        return resolve_layer(self.kernel_size, self.stride, (1, 1), self.padding, shape, "constant")

    def apply_padded(self, x: Array) -> Array:
        pool = max_pool_valid if self.op == "max" else avg_pool_valid
        return pool(x, self.kernel_size, self.stride)

    def describe(self) -> dict[str, Any]:
        return {"type": "pool", "op": self.op, "padding_spec": _padding_spec(self.padding)}

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.describe(),
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": _padding_spec(self.padding),
            "dilation": [1, 1],
        }


@dataclass(frozen=True)
class ReduceLayer:
    """Reduce consecutive groups of features (e.g. MR8's max over 6 orientations); 1x1 geometry.

    ``groups`` lists the group sizes in feature order; they must add up to the input channel
    count (a single size repeats). ``ops`` is one reduction for every group, or one per group
    (repeating when the groups do, e.g. per input channel): MR8 takes ``max_abs`` -- the largest
    absolute response -- over its edge filters and a signed ``max`` over its bars (the reference
    ``MR8fast.m``); a group of one feature passes through whatever the op.
    """

    ops: tuple[ReduceOp, ...]
    groups: tuple[int, ...]

    kind: ClassVar[str] = "reduce"
    pad_value: ClassVar[float] = 0.0

    @classmethod
    def create(cls, op: Any = "max", groups: Any = None) -> ReduceLayer:
        op_list = op if isinstance(op, (list, tuple)) and op else [op]
        ops = tuple(parse_choice("reduce op", item, REDUCE_OPS) for item in op_list)
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
        return cls(ops, tuple(groups))

    def _sizes(self, in_channels: int) -> tuple[int, ...]:
        """A single group size repeats over all channels; a list must cover them exactly."""
        if len(self.groups) == 1:
            if in_channels % self.groups[0]:
                raise InputError(
                    f"reduce group size {self.groups[0]} does not divide the {in_channels} input features"
                )
            sizes = self.groups * (in_channels // self.groups[0])
        elif sum(self.groups) != in_channels:
            raise InputError(
                f"reduce groups {list(self.groups)} add up to {sum(self.groups)} but the input has "
                f"{in_channels} features"
            )
        else:
            sizes = self.groups
        if len(sizes) % len(self.ops):
            raise InputError(
                f"reduce op lists {len(self.ops)} reductions for {len(sizes)} groups; give one op, "
                "or one per group"
            )
        return sizes

    def plan(self, in_channels: int) -> list[tuple[ReduceOp, int, int]]:
        """``(op, start, stop)`` of every group of the ``in_channels`` input features."""
        sizes = self._sizes(in_channels)
        starts = itertools.accumulate(sizes, initial=0)
        ops = itertools.cycle(self.ops)
        return [
            (op, start, start + size) for op, start, size in zip(ops, starts, sizes, strict=False)
        ]

    def out_channels(self, in_channels: int) -> int:
        return len(self._sizes(in_channels))

    def geometry(self, shape: Sequence[int]) -> LayerGeometry:
        return LayerGeometry((1, 1), padding_mode="constant")

    def apply_padded(self, x: Array) -> Array:
        xp = array_namespace(x)
        reducers = {
            "max": lambda part: xp.max(part, axis=-3, keepdims=True),
            "max_abs": lambda part: xp.max(xp.abs(part), axis=-3, keepdims=True),
            "mean": lambda part: xp.mean(part, axis=-3, keepdims=True),
            "sum": lambda part: xp.sum(part, axis=-3, keepdims=True),
        }
        parts = [
            x[..., start:stop, :, :]
            if stop - start == 1
            else reducers[op](x[..., start:stop, :, :])
            for op, start, stop in self.plan(x.shape[-3])
        ]
        return xp.concatenate(parts, axis=-3)

    def describe(self) -> dict[str, Any]:
        return {
            "type": "reduce",
            "op": self.ops[0] if len(self.ops) == 1 else list(self.ops),
            "groups": list(self.groups),
            "padding_spec": [[0, 0], [0, 0]],
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.describe(), **LayerGeometry((1, 1)).to_dict()}


Layer = ConvLayer | PoolLayer | ReduceLayer


def _as_float32_host(value: Any, name: str) -> np.ndarray:
    if array_namespace(value) is not np:  # CuPy weights are kept on the host, moved per block
        value = value.get()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise InputError(f"{name} must be a numeric array, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)
