"""``eigenvalues`` in a pipeline file: ``ndim`` (2 or 3; default the rank of the conv layer
before it), the eigenvalues, descending, of the symmetric tensors whose unique components are
consecutive groups of the input features -- 2-D ``[yy, yx, xx]``, 3-D ``[zz, zy, zx, yy, yx,
xx]`` (:mod:`featuremap.engine.layers.eigenvalues`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from featuremap.engine.layers import EigenvaluesLayer
from featuremap.pipeline.layers._base import BuildContext, ParseContext, register
from featuremap.pipeline.schema import field_value, mapping

__all__ = ["EigenvaluesSpec"]

KEYS = ("ndim",)


@register
@dataclass(frozen=True)
class EigenvaluesSpec:
    """An ``eigenvalues`` layer as written, its rank filled in."""

    rank: int

    kind: ClassVar[str] = "eigenvalues"

    @property
    def ndim(self) -> int:
        """The tensors' rank, which is the stack's."""
        return self.rank

    @classmethod
    def parse(cls, value: Any, where: str, context: ParseContext) -> EigenvaluesSpec:
        spec = mapping(value, where, KEYS)
        given = spec.get("ndim", context.ndim)
        return cls(field_value(where, "ndim", EigenvaluesLayer.create, given).rank)

    def to_dict(self) -> dict[str, Any]:
        return {"ndim": self.rank}

    def weight_files(self) -> list[str]:
        return []

    def build(self, context: BuildContext) -> EigenvaluesLayer:
        return EigenvaluesLayer(self.rank)
