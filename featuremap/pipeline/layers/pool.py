"""``pool`` in a pipeline file: ``type`` (required, ``max`` or ``avg``), ``kernel_size``
(required), ``stride`` (default: ``kernel_size``), ``padding`` 0."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from featuremap._vocabulary import POOL_OPS, PoolOp
from featuremap.engine.layers import PoolLayer
from featuremap.pipeline.layers._base import BuildContext, ParseContext, register
from featuremap.pipeline.layers.conv import padding_value
from featuremap.pipeline.schema import choice_field, field_value, mapping, pair_field

__all__ = ["PoolSpec"]

KEYS = ("type", "kernel_size", "stride", "padding")


@register
@dataclass(frozen=True)
class PoolSpec:
    """A ``pool`` layer as written, every default filled in."""

    type: PoolOp
    kernel_size: list[int]
    stride: list[int]
    padding: str | list[list[int]]

    kind: ClassVar[str] = "pool"

    @classmethod
    def parse(cls, value: Any, where: str, context: ParseContext) -> PoolSpec:
        spec = mapping(value, where, KEYS, required=("type", "kernel_size"))
        op = field_value(where, "type", choice_field("type", POOL_OPS), spec["type"])
        kernel = field_value(where, "kernel_size", pair_field("kernel_size"), spec["kernel_size"])
        stride = field_value(where, "stride", pair_field("stride"), spec.get("stride", kernel))
        padding = field_value(where, "padding", padding_value, spec.get("padding", 0))
        parsed = cls(op, kernel, stride, padding)  # type: ignore[arg-type]
        # The cross-field rule (padding at most half the kernel) is the layer's own.
        field_value(where, "padding", lambda _: parsed.layer(), padding)
        return parsed

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.padding,
        }

    def weight_files(self) -> list[str]:
        return []

    def layer(self) -> PoolLayer:
        return PoolLayer.create(self.type, self.kernel_size, self.stride, self.padding)

    def build(self, context: BuildContext) -> PoolLayer:
        return self.layer()
