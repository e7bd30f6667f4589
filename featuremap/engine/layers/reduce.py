"""The ``reduce`` layer kind: one reduction over each consecutive group of features; and what
every pointwise kind shares (:class:`Pointwise`: kernel 1, stride 1, geometry unchanged)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from featuremap._typing import Array
from featuremap._validation import parse_choice
from featuremap._vocabulary import REDUCE_OPS, ReduceOp
from featuremap.engine.geometry import LayerGeometry
from featuremap.engine.kernels import array_namespace
from featuremap.engine.labels import group_label
from featuremap.engine.layers._base import FeatureDescription, Window
from featuremap.errors import InputError, describe

__all__ = ["Pointwise", "ReduceLayer", "feature_axis"]


def feature_axis(window: Window) -> int:
    """The feature axis of a block ``(..., C, *spatial)`` at ``window``, counted from the end."""
    return -1 - window.ndim


class Pointwise:
    """What the pointwise kinds (``reduce``, ``activation``, ``product``, ``eigenvalues``) share:
    every output pixel is computed from the input pixel at the same place -- kernel 1, stride 1,
    no padding, so the geometry of any input is unchanged -- and they fit a stack of either
    rank (``ndim`` is ``None``) unless a kind says otherwise."""

    pad_value: ClassVar[float] = 0.0

    @property
    def ndim(self) -> int | None:
        """Pointwise: fits a stack of any rank."""
        return None

    def geometry(self, shape: Sequence[int]) -> LayerGeometry:
        ones = (1,) * len(shape)
        return LayerGeometry(ones, ones, ones, ((0, 0),) * len(shape), padding_mode="constant")

    def describe(self) -> dict[str, Any]:
        """The kind's own parameters, with ``"type"`` and ``"padding_spec"`` (:meth:`_described`)."""
        raise NotImplementedError

    def _described(self, kind: str, **parameters: Any) -> dict[str, Any]:
        return {"type": kind, **parameters, "padding_spec": [[0, 0], [0, 0]]}

    def to_dict(self) -> dict[str, Any]:
        return {**self.describe(), **LayerGeometry((1, 1)).to_dict()}


@dataclass(frozen=True)
class ReduceLayer(Pointwise):
    """Reduce consecutive groups of features (e.g. MR8's max over 6 orientations); 1x1 geometry.

    ``groups`` lists the group sizes in feature order; they must add up to the input channel
    count (a single size repeats). ``ops`` is one reduction for every group, or one per group
    (repeating when the groups do, e.g. per input channel): MR8 takes ``max_abs`` -- the largest
    absolute response -- over its edge filters and a signed ``max`` over its bars (the reference
    ``MR8fast.m``); a group of one feature passes through whatever the op. ``magnitude`` is
    ``sqrt(Σ x²)`` over the group -- a gradient magnitude from its per-axis derivatives, in 2-D
    and 3-D alike -- and applies to a group of one too (``|x|``).
    """

    ops: tuple[ReduceOp, ...]
    groups: tuple[int, ...]

    kind: ClassVar[str] = "reduce"

    @classmethod
    def create(cls, op: Any = "max", groups: Any = None) -> ReduceLayer:
        op_list = op if isinstance(op, (list, tuple)) and op else [op]
        ops = tuple(parse_choice("reduce op", item, REDUCE_OPS) for item in op_list)
        if isinstance(groups, int) and not isinstance(groups, bool):
            groups = [groups]
        if (
            not isinstance(groups, (list, tuple))
            or not groups
            or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in groups)
        ):
            raise InputError(
                f"reduce groups must be a positive integer or a list of them, got {describe(groups)}"
            )
        return cls(ops, tuple(groups))

    def _sizes(self, in_channels: int) -> tuple[int, ...]:
        """A single group size repeats over all channels; a list must cover them exactly."""
        if len(self.groups) == 1:
            if in_channels % self.groups[0]:
                raise InputError(
                    f"reduce group size {self.groups[0]} does not divide the {in_channels} input features"
                )
            sizes = self.groups * (in_channels // self.groups[0])
        elif sum(self.groups) != in_channels:
            raise InputError(
                f"reduce groups {list(self.groups)} add up to {sum(self.groups)} but the input has "
                f"{in_channels} features"
            )
        else:
            sizes = self.groups
        if len(sizes) % len(self.ops):
            raise InputError(
                f"reduce op lists {len(self.ops)} reductions for {len(sizes)} groups; give one op, "
                "or one per group"
            )
        return sizes

    def plan(self, in_channels: int) -> list[tuple[ReduceOp, int, int]]:
        """``(op, start, stop)`` of every group of the ``in_channels`` input features."""
        sizes = self._sizes(in_channels)
        starts = itertools.accumulate(sizes, initial=0)
        ops = itertools.cycle(self.ops)
        return [
            (op, start, start + size) for op, start, size in zip(ops, starts, sizes, strict=False)
        ]

    def out_channels(self, in_channels: int) -> int:
        return len(self._sizes(in_channels))

    def apply_padded(self, x: Array, window: Window) -> Array:
        xp = array_namespace(x)
        axis = feature_axis(window)
        reducers = {
            "max": lambda part: xp.max(part, axis=axis, keepdims=True),
            "max_abs": lambda part: xp.max(xp.abs(part), axis=axis, keepdims=True),
            "mean": lambda part: xp.mean(part, axis=axis, keepdims=True),
            "sum": lambda part: xp.sum(part, axis=axis, keepdims=True),
            "magnitude": lambda part: xp.sqrt(xp.sum(part * part, axis=axis, keepdims=True)),
        }
        lead = (slice(None),) * (x.ndim + axis)
        parts = [
            x[(*lead, slice(start, stop))]
            if stop - start == 1 and op != "magnitude"
            else reducers[op](x[(*lead, slice(start, stop))])
            for op, start, stop in self.plan(x.shape[axis])
        ]
        return xp.concatenate(parts, axis=axis)

    def describe(self) -> dict[str, Any]:
        return self._described(
            "reduce",
            op=self.ops[0] if len(self.ops) == 1 else list(self.ops),
            groups=list(self.groups),
        )

    def describe_features(
        self, inputs: Sequence[FeatureDescription], channel_names: Sequence[str] | None
    ) -> list[FeatureDescription]:
        """Each group is named by its reduction and what its features have in common."""
        return [
            {"name": group_label(op, inputs[start:stop])}
            for op, start, stop in self.plan(len(inputs))
        ]
