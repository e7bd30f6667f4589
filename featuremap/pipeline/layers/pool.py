"""``pool`` in a pipeline file: ``type`` (required, ``max`` or ``avg``), ``kernel_size``
(required), ``stride`` (default: ``kernel_size``), ``padding`` 0, and torch's ``ceil_mode``
(``false``), ``dilation`` (max, 1), ``count_include_pad`` (avg, ``true``), ``divisor_override``
(avg, none). Those four are written back only where they differ from their defaults, so a
pipeline that does not use them keeps its fingerprint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from featuremap._validation import parse_bool, parse_choice
from featuremap._vocabulary import POOL_OPS, PoolOp
from featuremap.engine.geometry import parse_padding
from featuremap.engine.layers import PoolLayer
from featuremap.engine.layers.pool import check_pool_padding
from featuremap.errors import InputError
from featuremap.pipeline.layers._base import BuildContext, ParseContext, register
from featuremap.pipeline.layers.conv import padding_field
from featuremap.pipeline.schema import field_value, mapping, sizes_field

__all__ = ["PoolSpec"]

KEYS = (
    "type",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "ceil_mode",
    "count_include_pad",
    "divisor_override",
)


@register
@dataclass(frozen=True)
class PoolSpec:
    """A ``pool`` layer as written, every default filled in; ``built`` is its layer, built and
    checked once at parse time (not part of the spec's value)."""

    type: PoolOp
    kernel_size: list[int]
    stride: list[int]
    padding: str | list[list[int]]
    dilation: list[int] = field(default_factory=lambda: [1, 1])
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None
    built: PoolLayer = field(compare=False, repr=False, kw_only=True)

    kind: ClassVar[str] = "pool"

    @property
    def ndim(self) -> int:
        return len(self.kernel_size)

    @classmethod
    def parse(cls, value: Any, where: str, context: ParseContext) -> PoolSpec:
        spec = mapping(value, where, KEYS, required=("type", "kernel_size"))
        op = field_value(where, "type", lambda v: parse_choice("type", v, POOL_OPS), spec["type"])
        # a list's length is the pool's rank; one number takes the rank of the layers before it
        given = spec["kernel_size"]
        ndim = len(given) if isinstance(given, list) and len(given) in (2, 3) else context.ndim
        kernel = field_value(where, "kernel_size", sizes_field("kernel_size", ndim), given)
        stride = field_value(
            where, "stride", sizes_field("stride", ndim), spec.get("stride", kernel)
        )
        padding = field_value(where, "padding", padding_field(ndim), spec.get("padding", 0))
        # PyTorch's padding rule is named as the padding's; the other cross-field rules (the
        # other op's options, the divisor) as the layer's.
        field_value(
            where,
            "padding",
            lambda v: check_pool_padding(tuple(kernel), parse_padding(v, ndim)),
            padding,
        )
        options: dict[str, Any] = {
            "dilation": field_value(
                where, "dilation", sizes_field("dilation", ndim), spec.get("dilation", 1)
            ),
            "ceil_mode": field_value(
                where,
                "ceil_mode",
                lambda v: parse_bool("ceil_mode", v),
                spec.get("ceil_mode", False),
            ),
            "count_include_pad": field_value(
                where,
                "count_include_pad",
                lambda v: parse_bool("count_include_pad", v),
                spec.get("count_include_pad", True),
            ),
            "divisor_override": spec.get("divisor_override"),
        }
        try:
            layer = PoolLayer.create(op, kernel, stride, padding, **options)
        except InputError as error:
            raise InputError(f"{where}: {error}") from None
        return cls(op, kernel, stride, padding, **options, built=layer)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.padding,
            **{
                key: value
                for key, value, default in (
                    ("dilation", list(self.dilation), [1] * self.ndim),
                    ("ceil_mode", self.ceil_mode, False),
                    ("count_include_pad", self.count_include_pad, True),
                    ("divisor_override", self.divisor_override, None),
                )
                if value != default
            },
        }

    def weight_files(self) -> list[str]:
        return []

    def build(self, context: BuildContext) -> PoolLayer:
        """The layer built (and checked) when the file was parsed."""
        return self.built
