"""The ``pointwise`` layer kind: output channels computed voxel by voxel from chosen input channels.

A :class:`PointwiseLayer` is a list of :class:`PointwiseOp` s, each reading some input channels
and giving one or more output channels, in order:

* ``copy`` ``[i]`` -> ``x_i``; ``sum`` ``[i, j, ...]`` -> ``Σ x``; ``difference`` ``[i, j]`` ->
  ``x_i - x_j``; ``magnitude`` ``[i, j, ...]`` -> ``sqrt(Σ x²)``; ``product`` ``[i, j]`` ->
  ``x_i x_j``;
* ``eigenvalues`` of the symmetric tensor whose unique components are the inputs (3 in 2-D, 6 in
  3-D, ordered as :func:`~featuremap.engine.kernels.tensor_components`) -> its eigenvalues,
  descending, computed in float64 (:func:`~featuremap.engine.kernels.symmetric_eigenvalues`).

Kernel 1, geometry unchanged (like ``reduce``), any spatial rank. It is the non-linear glue of the
``features`` layer (DESIGN section 8): gradient magnitudes, LoG and DoG sums, the structure
tensor's products and both tensors' eigenvalues, each output described for its label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from featuremap._typing import Array
from featuremap.engine.geometry import LayerGeometry
from featuremap.engine.kernels import array_namespace
from featuremap.engine.kernels.eigenvalues import symmetric_eigenvalues
from featuremap.engine.layers._base import FeatureDescription, Window
from featuremap.errors import InputError

__all__ = ["PointwiseLayer", "PointwiseOp"]

OpKind = Literal["copy", "sum", "difference", "magnitude", "product", "eigenvalues"]

#: How many inputs each kind takes (``None``: one or more).
_ARITY: dict[str, int | None] = {
    "copy": 1,
    "sum": None,
    "difference": 2,
    "magnitude": None,
    "product": 2,
    "eigenvalues": None,
}


@dataclass(frozen=True)
class PointwiseOp:
    """One operation: its ``kind``, the input channels it reads, and the description of its
    output (``eigenvalues``: of each of its outputs, with ``component`` added)."""

    kind: OpKind
    inputs: tuple[int, ...]
    description: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arity = _ARITY.get(self.kind, 0)
        if arity == 0 or not self.inputs or (arity is not None and len(self.inputs) != arity):
            raise InputError(f"pointwise op {self.kind!r} cannot take the inputs {self.inputs}")
        if self.kind == "eigenvalues" and len(self.inputs) not in (3, 6):
            raise InputError(
                "pointwise eigenvalues take the 3 (2-D) or 6 (3-D) unique components of a "
                f"symmetric tensor, got {len(self.inputs)} inputs"
            )

    @property
    def outputs(self) -> int:
        """Output channels: 2 or 3 eigenvalues, else 1."""
        if self.kind == "eigenvalues":
            return 2 if len(self.inputs) == 3 else 3
        return 1

    def descriptions(self) -> list[FeatureDescription]:
        if self.kind == "eigenvalues":
            return [{**self.description, "component": k} for k in range(self.outputs)]
        return [dict(self.description)]

    def apply(self, channel: Any, xp: Any) -> list[Array]:
        """The op's outputs; ``channel(i)`` is input channel ``i`` (float32)."""
        values = [channel(i) for i in self.inputs]
        if self.kind == "eigenvalues":
            eigen = symmetric_eigenvalues(xp.stack(values), axis=0, dtype=xp.float32)
            return list(eigen)
        if self.kind == "magnitude":
            return [xp.sqrt(sum(v * v for v in values))]
        if self.kind == "difference":
            return [values[0] - values[1]]
        if self.kind == "product":
            return [values[0] * values[1]]
        return [sum(values[1:], values[0])] if self.kind == "sum" else [values[0]]


@dataclass(frozen=True)
class PointwiseLayer:
    """Output channels computed voxel by voxel from input channels (module docstring)."""

    ops: tuple[PointwiseOp, ...]
    name: str = "pointwise"

    kind: ClassVar[str] = "pointwise"
    pad_value: ClassVar[float] = 0.0

    @property
    def ndim(self) -> None:
        """Pointwise: fits a stack of either rank."""
        return None

    def out_channels(self, in_channels: int) -> int:
        largest = max(i for op in self.ops for i in op.inputs)
        if largest >= in_channels:
            raise InputError(
                f"the {self.name} layer reads input channel {largest} but its input has "
                f"{in_channels}"
            )
        return sum(op.outputs for op in self.ops)

    def geometry(self, shape: Sequence[int]) -> LayerGeometry:
        ones = (1,) * len(shape)
        return LayerGeometry(ones, ones, ones, ((0, 0),) * len(shape), padding_mode="constant")

    def apply_padded(self, x: Array, window: Window) -> Array:
        xp = array_namespace(x)
        axis = x.ndim - 1 - window.ndim
        lead = (slice(None),) * axis

        def channel(i: int) -> Array:
            return x[(*lead, i)]

        outputs = [value for op in self.ops for value in op.apply(channel, xp)]
        return xp.stack([xp.asarray(v, dtype=xp.float32) for v in outputs], axis=axis)

    def describe(self) -> dict[str, Any]:
        return {
            "type": "pointwise",
            "name": self.name,
            "ops": [[op.kind, list(op.inputs)] for op in self.ops],
            "padding_spec": [[0, 0], [0, 0]],
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.describe(), **LayerGeometry((1, 1)).to_dict()}

    def describe_features(
        self, inputs: Sequence[FeatureDescription], channel_names: Sequence[str] | None
    ) -> list[FeatureDescription]:
        """Each op's own descriptions (the ``features`` layer names every output)."""
        return [description for op in self.ops for description in op.descriptions()]
