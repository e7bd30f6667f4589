"""``reduce`` in a pipeline file: ``op`` (``max``, ``max_abs``, ``mean``, ``sum``, ``magnitude``
-- the square root of the sum of squares --, or one per group) over consecutive groups of features; ``groups``: a group size or a list of sizes. Either
left out, the previous conv layer's bank suggests them (``mr8``: ``max_abs`` over each 6 edge
orientations, ``max`` over the bars)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from featuremap._validation import parse_choice
from featuremap._vocabulary import REDUCE_OPS
from featuremap.engine.layers import ReduceLayer
from featuremap.errors import InputError
from featuremap.pipeline.layers._base import BuildContext, ParseContext, register
from featuremap.pipeline.schema import field_value, mapping

__all__ = ["ReduceSpec"]

KEYS = ("op", "groups")


def _op(value: Any) -> str | list[str]:
    """One reduction, or a list of one per group."""
    if isinstance(value, list) and value:
        return [parse_choice("op", item, REDUCE_OPS) for item in value]
    return parse_choice("op", value, REDUCE_OPS)


@register
@dataclass(frozen=True)
class ReduceSpec:
    """A ``reduce`` layer as written; ``None`` where the previous bank is to suggest."""

    op: str | list[str] | None
    groups: list[int] | None

    kind: ClassVar[str] = "reduce"

    @property
    def ndim(self) -> None:
        """Pointwise: fits a stack of either rank."""
        return None

    @classmethod
    def parse(cls, value: Any, where: str, context: ParseContext) -> ReduceSpec:
        spec = mapping(value, where, KEYS)
        op = spec.get("op")
        if op is not None:
            op = field_value(where, "op", _op, op)
        groups = spec.get("groups")
        if groups is not None:
            layer = field_value(
                where, "groups", lambda g: ReduceLayer.create(op or "max", g), groups
            )
            groups = list(layer.groups)
        return cls(op, groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": list(self.op) if isinstance(self.op, list) else self.op,
            "groups": None if self.groups is None else list(self.groups),
        }

    def weight_files(self) -> list[str]:
        return []

    def build(self, context: BuildContext) -> ReduceLayer:
        """Groups and ops left out are those the previous conv layer's bank suggests."""
        bank = context.bank
        groups = self.groups or (None if bank is None else bank.reduce_groups)
        if groups is None:
            raise InputError(
                "groups: missing, and the previous conv layer's bank suggests none; "
                "give a group size or a list of sizes"
            )
        suggested_ops = None if bank is None or self.groups else bank.reduce_ops
        return ReduceLayer.create(self.op or suggested_ops or "max", groups)
