"""``product`` in a pipeline file: ``pairs`` (required), a list of ``[i, j]`` input channel
indices, one output feature ``x_i * x_j`` each (``i == j``: a square). Indices past the channels
the layer meets are refused when the stack is built, with the channel count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from featuremap.engine.layers import ProductLayer
from featuremap.pipeline.layers._base import BuildContext, ParseContext, register
from featuremap.pipeline.schema import field_value, mapping

__all__ = ["ProductSpec"]

KEYS = ("pairs",)


@register
@dataclass(frozen=True)
class ProductSpec:
    """A ``product`` layer as written."""

    pairs: tuple[tuple[int, int], ...]

    kind: ClassVar[str] = "product"

    @property
    def ndim(self) -> None:
        """Pointwise: fits a stack of either rank."""
        return None

    @classmethod
    def parse(cls, value: Any, where: str, context: ParseContext) -> ProductSpec:
        spec = mapping(value, where, KEYS, required=KEYS)
        return cls(field_value(where, "pairs", ProductLayer.create, spec["pairs"]).pairs)

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": [list(pair) for pair in self.pairs]}

    def weight_files(self) -> list[str]:
        return []

    def build(self, context: BuildContext) -> ProductLayer:
        """The layer; :func:`~featuremap.pipeline.layers.build_layers` checks its indices
        against ``context.channels`` (``pairs: [0, 7] reads channel 7 but the input has 3 ...``)."""
        return ProductLayer(self.pairs)
