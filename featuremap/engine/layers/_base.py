"""What every layer kind has in common: the :class:`Layer` protocol and shared helpers.

A layer kind is one module in this package (``conv``, ``pool``, ``reduce``): a frozen dataclass
built by ``create`` (which parses its parameters once), that knows its geometry for an input
size, computes on a block that already carries its padding, describes itself for the store, and
names its output features. Block planning, the fused compute, the store and ``explain`` use only
this protocol, so a new kind touches nothing else in the engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from featuremap._typing import Array
from featuremap._validation import parse_choice
from featuremap._vocabulary import ACTIVATIONS, Activation
from featuremap.engine.geometry import LayerGeometry, Padding, Sizes
from featuremap.engine.kernels import array_namespace
from featuremap.errors import InputError

__all__ = [
    "FeatureDescription",
    "Layer",
    "Window",
    "as_float32_host",
    "padding_spec",
    "parse_activation",
    "requested_geometry",
]

#: What is known of one feature map: a bank's filter description (``{"name": "gabor",
#: "orientation": 0.785, ...}``), turned into a readable label by :mod:`featuremap.engine.labels`.
FeatureDescription = Mapping[str, Any]


@dataclass(frozen=True)
class Window:
    """Where a padded block sits in its layer: the index (``(y, x)``, ``(z, y, x)`` in 3-D) of
    its first output in the layer's whole output, and the layer's unpadded input size. Most
    layers compute the same everywhere; an average pool's divisor depends on the position
    (``ceil_mode``, ``count_include_pad=False``). Its length is the block's spatial rank."""

    origin: Sizes = (0, 0)
    input_size: Sizes = (0, 0)

    @property
    def ndim(self) -> int:
        """The number of spatial axes: the block is ``(..., C, *spatial)``."""
        return len(self.origin)


class Layer(Protocol):
    """One layer of a stack, as the engine sees it."""

    kind: ClassVar[str]

    @property
    def ndim(self) -> int | None:
        """The layer's spatial rank (2 or 3), or ``None`` for a pointwise layer of any rank."""
        ...

    @property
    def pad_value(self) -> float:
        """The value a constant border is filled with (``-inf`` for max pooling)."""
        ...

    def out_channels(self, in_channels: int) -> int:
        """Output channel count for ``in_channels`` inputs; :class:`InputError` on a mismatch."""
        ...

    def geometry(self, shape: Sequence[int]) -> LayerGeometry:
        """The layer resolved against an input's spatial size (``(H, W)`` or ``(D, H, W)``)."""
        ...

    def apply_padded(self, x: Array, window: Window) -> Array:
        """Compute on a block that already carries its padding, at ``window``."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the layer is besides its geometry (no weights), for the store's attributes."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The layer's full specification (no weights), geometry as requested."""
        ...

    def describe_features(
        self, inputs: Sequence[FeatureDescription], channel_names: Sequence[str] | None
    ) -> list[FeatureDescription]:
        """One description per output feature, from the descriptions of its input features
        (``channel_names``: the input image's channel names, for a per-channel bank)."""
        ...


def parse_activation(value: Any) -> Activation:
    """One of :data:`~featuremap._vocabulary.ACTIVATIONS`."""
    return parse_choice("activation", value, ACTIVATIONS)


def padding_spec(padding: Padding) -> str | list[list[int]]:
    """Padding as written in a pipeline file: ``"same"`` / ``"valid"`` or ``[[lo, hi], ...]``."""
    return padding if isinstance(padding, str) else [list(pair) for pair in padding]


def requested_geometry(
    kernel_size: Sizes, stride: Sizes, padding: Padding, dilation: Sizes
) -> dict[str, Any]:
    """A layer's geometry as requested (``"same"`` unresolved), for its ``to_dict``."""
    return {
        "kernel_size": list(kernel_size),
        "stride": list(stride),
        "padding": padding_spec(padding),
        "dilation": list(dilation),
    }


def as_float32_host(value: Any, name: str) -> np.ndarray:
    if array_namespace(value) is not np:  # CuPy weights are kept on the host, moved per block
        value = value.get()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise InputError(f"{name} must be a numeric array, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)
