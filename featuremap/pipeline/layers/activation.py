"""``activation`` in a pipeline file: ``op`` (required), one of the activations a conv's
``activation`` takes (``sqrt``, ``abs``, ``square``, ``relu``, ...), applied to every feature."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from featuremap._vocabulary import Activation
from featuremap.engine.layers import ActivationLayer
from featuremap.pipeline.layers._base import BuildContext, ParseContext, register
from featuremap.pipeline.schema import field_value, mapping

__all__ = ["ActivationSpec"]

KEYS = ("op",)


@register
@dataclass(frozen=True)
class ActivationSpec:
    """An ``activation`` layer as written."""

    op: Activation

    kind: ClassVar[str] = "activation"

    @property
    def ndim(self) -> None:
        """Pointwise: fits a stack of either rank."""
        return None

    @classmethod
    def parse(cls, value: Any, where: str, context: ParseContext) -> ActivationSpec:
        spec = mapping(value, where, KEYS, required=KEYS)
        return cls(field_value(where, "op", ActivationLayer.create, spec["op"]).op)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op}

    def weight_files(self) -> list[str]:
        return []

    def build(self, context: BuildContext) -> ActivationLayer:
        return ActivationLayer.create(self.op)
