"""The ``product`` layer kind: products of pairs of features, pointwise
(:class:`~featuremap.engine.layers.reduce.Pointwise`) -- e.g. the ``g_a g_b`` of a structure
tensor from a gradient's channels, in the component order of
:func:`~featuremap.engine.kernels.tensor_components`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from featuremap._typing import Array
from featuremap._validation import is_integer
from featuremap.engine.kernels import array_namespace
from featuremap.engine.labels import derived
from featuremap.engine.layers._base import FeatureDescription, Window
from featuremap.engine.layers.reduce import Pointwise, feature_axis
from featuremap.errors import InputError, describe

__all__ = ["ProductLayer"]

Pair = tuple[int, int]


def _pairs(value: Any) -> tuple[Pair, ...]:
    """A non-empty list of ``[i, j]`` pairs of channel indices >= 0."""
    if (
        isinstance(value, (list, tuple))
        and value
        and all(
            isinstance(pair, (list, tuple))
            and len(pair) == 2
            and all(is_integer(i) and i >= 0 for i in pair)
            for pair in value
        )
    ):
        return tuple((int(i), int(j)) for i, j in value)
    raise InputError(
        "pairs must be a non-empty list of [i, j] input channel indices (integers >= 0), "
        f"got {describe(value)}"
    )


@dataclass(frozen=True)
class ProductLayer(Pointwise):
    """One output feature per pair ``(i, j)``: ``x[i] * x[j]`` (``i == j``: a square), in the
    order of ``pairs``; float32, NaN propagating."""

    pairs: tuple[Pair, ...]

    kind: ClassVar[str] = "product"

    @classmethod
    def create(cls, pairs: Any) -> ProductLayer:
        """Validate ``pairs``: a non-empty list of ``[i, j]`` channel indices (checked against
        the input's channel count by :meth:`out_channels`).

        Raises
        ------
        InputError
            ``pairs must be a non-empty list of [i, j] input channel indices ...``.
        """
        return cls(_pairs(pairs))

    def out_channels(self, in_channels: int) -> int:
        largest = max(max(pair) for pair in self.pairs)
        if largest >= in_channels:
            pair = next(pair for pair in self.pairs if largest in pair)
            raise InputError(
                f"pairs: {list(pair)} reads channel {largest} but the input has {in_channels} "
                f"channels (0 to {in_channels - 1})"
            )
        return len(self.pairs)

    def apply_padded(self, x: Array, window: Window) -> Array:
        xp = array_namespace(x)
        axis = feature_axis(window)
        first, second = (xp.asarray([pair[k] for pair in self.pairs]) for k in (0, 1))
        product = xp.take(x, first, axis=axis) * xp.take(x, second, axis=axis)
        return xp.asarray(product, dtype=xp.float32)

    def describe(self) -> dict[str, Any]:
        return self._described(self.kind, pairs=[list(pair) for pair in self.pairs])

    def describe_features(
        self, inputs: Sequence[FeatureDescription], channel_names: Sequence[str] | None
    ) -> list[FeatureDescription]:
        """``product(a, b)`` of the two inputs' labels, per pair."""
        return [derived("product", [inputs[i], inputs[j]]) for i, j in self.pairs]
