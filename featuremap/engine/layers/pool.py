"""The ``pool`` layer kind: ``max_pool2d`` / ``avg_pool2d`` (count_include_pad) semantics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from featuremap._typing import Array
from featuremap._validation import parse_choice, parse_pair
from featuremap._vocabulary import POOL_OPS, PoolOp
from featuremap.engine.geometry import LayerGeometry, Padding, Pair, parse_padding, resolve_layer
from featuremap.engine.kernels import avg_pool_valid, max_pool_valid
from featuremap.engine.layers._base import FeatureDescription, padding_spec
from featuremap.errors import InputError

__all__ = ["PoolLayer"]


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
        return {"type": "pool", "op": self.op, "padding_spec": padding_spec(self.padding)}

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.describe(),
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": padding_spec(self.padding),
            "dilation": [1, 1],
        }

    def describe_features(
        self, inputs: Sequence[FeatureDescription], channel_names: Sequence[str] | None
    ) -> list[FeatureDescription]:
        """A pool keeps its input features (and their descriptions)."""
        return list(inputs)
