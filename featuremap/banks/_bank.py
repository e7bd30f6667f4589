"""The :class:`Bank` value: a stack of filters plus the description of each one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from featuremap._validation import parse_choice, parse_int
from featuremap._vocabulary import CHANNEL_MODES
from featuremap.banks._params import (
    MAX_EXPANDED_FILTERS,
    MAX_EXPANDED_WEIGHT_ELEMENTS,
    check_weight_shape,
)
from featuremap.errors import InputError

__all__ = ["Bank"]


def _frozen_float32(array: np.ndarray) -> np.ndarray:
    # A bank is a value: callers (and caches keyed on it) must not see its weights change.
    frozen = np.array(array, dtype=np.float32, copy=True, order="C")
    frozen.flags.writeable = False
    return frozen


@dataclass(frozen=True, eq=False)
class Bank:
    """A filter bank ready for a conv layer (``torch.nn.functional.conv2d`` / ``conv3d`` weight
    layout).

    Attributes
    ----------
    name : str
        The registry name the bank was built from (``"gabor"``, ``"file"``, ...).
    params : dict
        The parameters actually used, defaults filled in; JSON-serialisable.
    weight : numpy.ndarray
        float32, shape ``(J, C / groups, kh, kw)`` (2-D filters) or ``(J, C / groups, kz, ky, kx)``
        (3-D filters), read-only. Applied by cross-correlation.
    bias : numpy.ndarray or None
        float32, shape ``(J,)``, read-only, or ``None``.
    filters : tuple of dict
        One JSON-serialisable description per output filter (``"name"`` and, as relevant,
        ``"sigma"``, ``"orientation"`` in radians, ``"order"``, ``"frequency"``, ``"phase"``,
        ``"channel"``).
    reduce : int or None
        Suggested group size of a max-over-orientation reduction (``mr8``: 6).
    reduce_groups : tuple of int or None
        Exact grouping of consecutive output features for that reduction: the sizes sum to ``J``
        and each group becomes one reduced feature (``mr8``: ``(6, 6, 6, 6, 6, 6, 1, 1)``).
    reduce_ops : tuple of str or None
        The reduction of each of those groups (``mr8``: ``max_abs`` for the 3 edge groups, ``max``
        for the 3 bar groups and the two single filters).
    groups : int
        ``groups`` of the conv layer that applies ``weight``.
    """

    name: str
    params: dict[str, Any]
    weight: np.ndarray
    bias: np.ndarray | None
    filters: tuple[dict[str, Any], ...]
    reduce: int | None = None
    reduce_groups: tuple[int, ...] | None = None
    groups: int = 1
    reduce_ops: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        weight = _frozen_float32(self.weight)
        if weight.ndim not in (4, 5) or 0 in weight.shape:
            raise InputError(
                f"bank {self.name!r} weight must have shape (J, C, kh, kw) or (J, C, kz, ky, kx), "
                f"every size >= 1, got {weight.shape}"
            )
        n_filters = weight.shape[0]
        object.__setattr__(self, "weight", weight)
        if self.bias is not None:
            bias = _frozen_float32(self.bias)
            if bias.shape != (n_filters,):
                raise InputError(
                    f"bank {self.name!r} bias must have shape ({n_filters},) to match weight "
                    f"{weight.shape}, got {bias.shape}"
                )
            object.__setattr__(self, "bias", bias)
        filters = tuple(dict(description) for description in self.filters)
        if len(filters) != n_filters:
            raise ValueError(
                f"bank {self.name!r}: {len(filters)} descriptions, {n_filters} filters"
            )
        object.__setattr__(self, "filters", filters)
        if self.reduce_groups is not None:
            groups = tuple(int(size) for size in self.reduce_groups)
            if sum(groups) != n_filters or min(groups) < 1:
                raise ValueError(
                    f"bank {self.name!r}: reduce_groups {groups} must sum to {n_filters}"
                )
            object.__setattr__(self, "reduce_groups", groups)
        if n_filters % self.groups:
            raise ValueError(
                f"bank {self.name!r}: {n_filters} filters do not split into {self.groups} groups"
            )

    @property
    def in_channels(self) -> int:
        """Number of input channels the bank expects (``C / groups * groups``)."""
        return int(self.weight.shape[1]) * self.groups

    @property
    def out_channels(self) -> int:
        """Number of output features ``J``."""
        return int(self.weight.shape[0])

    @property
    def ndim(self) -> int:
        """Spatial rank of the filters: 2 (``(kh, kw)``) or 3 (``(kz, ky, kx)``)."""
        return self.weight.ndim - 2

    @property
    def kernel_size(self) -> tuple[int, ...]:
        """``(kh, kw)`` or ``(kz, ky, kx)``."""
        return tuple(int(side) for side in self.weight.shape[2:])

    def for_channels(self, in_channels: int, mode: str = "per_channel") -> Bank:
        """Adapt a single-channel bank to an input with ``in_channels`` channels.

        Parameters
        ----------
        in_channels : int
            Channels of the input the bank will be applied to.
        mode : {"per_channel", "sum"}
            ``"per_channel"``: every filter on every channel separately, as a grouped conv with
            ``groups = in_channels``; outputs are channel-major (all filters of channel 0, then
            all of channel 1, ...) and each description gains a ``"channel"`` key.
            ``"sum"``: the same filter on every channel, responses summed (``J`` outputs).

        Returns
        -------
        Bank
            ``self`` when it already takes ``in_channels`` channels, else a new bank.

        Raises
        ------
        InputError
            If ``mode`` is unknown, the bank takes several channels but not ``in_channels``, or
            the expanded bank would exceed the limits of :mod:`featuremap.banks._params`.
        """
        mode = parse_choice("channel mode", mode, CHANNEL_MODES, quoted=True)
        in_channels = parse_int("in_channels", in_channels, minimum=1)
        if in_channels == self.in_channels:
            return self
        if self.in_channels != 1:
            raise InputError(
                f"bank {self.name!r} takes {self.in_channels} input channels but the input has "
                f"{in_channels}; only a single-channel bank can be expanded to several channels"
            )
        filters, kernel = self.out_channels, self.kernel_size
        check_weight_shape(
            self.name,
            (filters * in_channels, 1, *kernel)
            if mode == "per_channel"
            else (filters, in_channels, *kernel),
            max_filters=MAX_EXPANDED_FILTERS,
            max_elements=MAX_EXPANDED_WEIGHT_ELEMENTS,
            what=f" expanded to {in_channels} input channels ({mode})",
        )
        if mode == "sum":
            return dataclasses.replace(self, weight=np.repeat(self.weight, in_channels, axis=1))
        return dataclasses.replace(
            self,
            weight=np.tile(self.weight, (in_channels,) + (1,) * (self.weight.ndim - 1)),
            bias=None if self.bias is None else np.tile(self.bias, in_channels),
            filters=tuple(
                {**description, "channel": channel}
                for channel in range(in_channels)
                for description in self.filters
            ),
            reduce_groups=None if self.reduce_groups is None else self.reduce_groups * in_channels,
            reduce_ops=None if self.reduce_ops is None else self.reduce_ops * in_channels,
            groups=in_channels,
        )

    def to_dict(self) -> dict[str, Any]:
        """Metadata without the weights: name, params, filters, shape, groups, bias, reduction."""
        return {
            "name": self.name,
            "params": self.params,
            "shape": list(self.weight.shape),
            "groups": self.groups,
            "bias": self.bias is not None,
            "filters": [dict(description) for description in self.filters],
            "reduce": self.reduce,
            "reduce_groups": None if self.reduce_groups is None else list(self.reduce_groups),
            "reduce_ops": None if self.reduce_ops is None else list(self.reduce_ops),
        }
