"""The ``activation`` layer kind: one activation applied to every feature (``sqrt`` of a sum of
squares, ``abs`` of a response, ...), pointwise (:class:`~featuremap.engine.layers.reduce.Pointwise`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from featuremap._typing import Array
from featuremap._validation import parse_choice
from featuremap._vocabulary import ACTIVATIONS, Activation
from featuremap.engine.kernels import activate, array_namespace
from featuremap.engine.labels import derived
from featuremap.engine.layers._base import FeatureDescription, Window
from featuremap.engine.layers.reduce import Pointwise

__all__ = ["ActivationLayer"]


@dataclass(frozen=True)
class ActivationLayer(Pointwise):
    """Apply the activation ``op`` (one of :data:`~featuremap._vocabulary.ACTIVATIONS`, the
    names a conv's ``activation`` takes) to every feature; as many outputs as inputs, float32,
    NaN propagating (``sqrt`` of a negative value is NaN, as in PyTorch)."""

    op: Activation

    kind: ClassVar[str] = "activation"

    @classmethod
    def create(cls, op: Any) -> ActivationLayer:
        """Validate ``op``.

        Raises
        ------
        InputError
            For a name that is not an activation (``op must be one of none, relu, ...``).
        """
        return cls(parse_choice("op", op, ACTIVATIONS))

    def out_channels(self, in_channels: int) -> int:
        return in_channels

    def apply_padded(self, x: Array, window: Window) -> Array:
        xp = array_namespace(x)
        return activate(self.op, xp.array(x, dtype=xp.float32, copy=True))  # never in place

    def describe(self) -> dict[str, Any]:
        return self._described(self.kind, op=self.op)

    def describe_features(
        self, inputs: Sequence[FeatureDescription], channel_names: Sequence[str] | None
    ) -> list[FeatureDescription]:
        """``sqrt(gaussian σ=1)``; ``none`` keeps its inputs' descriptions."""
        if self.op == "none":
            return list(inputs)
        return [derived(self.op, [description]) for description in inputs]
