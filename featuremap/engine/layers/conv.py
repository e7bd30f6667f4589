"""The ``conv`` layer kind: ``torch.nn.functional.conv2d`` / ``conv3d`` semantics plus an activation.

The weight's rank says which: ``(J, C/groups, kh, kw)`` is 2-D, ``(J, C/groups, kz, ky, kx)`` 3-D.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from featuremap._typing import Array
from featuremap._validation import parse_int, parse_sizes
from featuremap._vocabulary import Activation, PaddingMode
from featuremap.engine.geometry import (
    LayerGeometry,
    Padding,
    ResolvedPadding,
    Sizes,
    as_pair,
    modes_spec,
    parse_padding,
    parse_padding_mode,
    resolve_layer,
)
from featuremap.engine.kernels import (
    activate,
    array_namespace,
    check_fits,
    conv2d_valid,
    conv3d_valid,
    pad,
)
from featuremap.engine.layers._base import (
    FeatureDescription,
    Window,
    as_float32_host,
    padding_spec,
    parse_activation,
    requested_geometry,
)
from featuremap.errors import InputError

__all__ = ["ConvLayer"]


@dataclass(frozen=True, eq=False)
class ConvLayer:
    """A convolution layer with ``torch.nn.functional.conv2d`` (4-D weight) or ``conv3d`` (5-D
    weight) semantics plus an activation.

    Build it with :meth:`create`, which validates and normalises every parameter.
    """

    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: Sizes = (1, 1)
    padding: Padding = ((0, 0), (0, 0))
    dilation: Sizes = (1, 1)
    groups: int = 1
    padding_mode: PaddingMode | tuple[PaddingMode, ...] = "zeros"
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
        weight = as_float32_host(weight, "weight")
        if weight.ndim not in (4, 5) or 0 in weight.shape:
            raise InputError(
                "weight must have shape (out_channels, in_channels/groups, kh, kw) or "
                f"(out_channels, in_channels/groups, kz, ky, kx), every size >= 1, got shape {weight.shape}"
            )
        ndim = weight.ndim - 2
        if flip:
            weight = np.ascontiguousarray(np.flip(weight, axis=tuple(range(2, weight.ndim))))
        if bias is not None:
            bias = as_float32_host(bias, "bias")
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
            stride=parse_sizes("stride", stride, ndim),
            padding=parse_padding(padding, ndim),
            dilation=parse_sizes("dilation", dilation, ndim),
            groups=groups,
            padding_mode=parse_padding_mode(padding_mode, ndim),
            activation=parse_activation(activation),
            bank=dict(bank or {}),
        )

    @property
    def ndim(self) -> int:
        """2 for a 4-D weight, 3 for a 5-D one."""
        return int(self.weight.ndim) - 2

    @property
    def kernel_size(self) -> Sizes:
        return tuple(int(k) for k in self.weight.shape[2:])

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
        """The layer resolved against an input's spatial size; refuses borders PyTorch refuses."""
        geometry = resolve_layer(
            self.kernel_size, self.stride, self.dilation, self.padding, shape, self.padding_mode
        )
        check_fits(self.padding_mode, geometry.padding, shape)
        return geometry

    def apply_padded(self, x: Array, window: Window) -> Array:
        """Compute on a block that already carries its padding."""
        return self.apply_zero_padded(x, ((0, 0),) * (self.ndim or 2), window)

    def apply_zero_padded(self, x: Array, padding: ResolvedPadding, window: Window) -> Array:
        """Compute on a block with ``padding`` zeros around it (``((top, bottom), (left,
        right))``), added by the kernel: oneDNN pads inside its own call, so a whole in-memory
        array through a 2-D layer whose border is zeros is never copied just to pad it."""
        xp = array_namespace(x)
        weight = xp.asarray(self.weight)
        bias = None if self.bias is None else xp.asarray(self.bias)
        if self.ndim == 2:
            out = conv2d_valid(
                x,
                weight,
                bias,
                stride=as_pair(self.stride),
                dilation=as_pair(self.dilation),
                groups=self.groups,
                zero_padding=(as_pair(padding[0]), as_pair(padding[1])),
            )
        else:
            if any(any(pair) for pair in padding):
                x = pad(x, padding, "zeros")
            out = conv3d_valid(
                x, weight, bias, stride=self.stride, dilation=self.dilation, groups=self.groups
            )
        return activate(self.activation, out)

    def describe(self) -> dict[str, Any]:
        """What the layer is besides its geometry (no weights): the store's per-layer attributes
        add the resolved :class:`LayerGeometry` to it."""
        return {
            "type": "conv",
            "padding_spec": padding_spec(self.padding),
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
            **requested_geometry(self.kernel_size, self.stride, self.padding, self.dilation),
            "padding_mode": modes_spec(self.padding_mode, self.ndim),
        }

    def describe_features(
        self, inputs: Sequence[FeatureDescription], channel_names: Sequence[str] | None
    ) -> list[FeatureDescription]:
        """The bank's filter descriptions (an input channel index replaced by its name), or
        ``{name, index}`` where the bank describes none."""
        features = int(self.weight.shape[0])
        filters = list(self.bank.get("filters") or [])
        if len(filters) != features:
            filters = [{"name": self.bank.get("name", "conv"), "index": i} for i in range(features)]
        return [_named_channel(description, channel_names) for description in filters]


def _named_channel(
    description: Mapping[str, Any], names: Sequence[str] | None
) -> FeatureDescription:
    """``description`` with its input channel index replaced by the channel's name, if known."""
    channel = description.get("channel")
    if names is None or not isinstance(channel, int) or not 0 <= channel < len(names):
        return dict(description)
    return {**description, "channel": names[channel]}
