"""What part of an input a job reads: ``input.region`` and ``input.channels``, and how to read
the input's axes (:class:`InputSelection`, the ``input.*`` keys besides the store)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from featuremap._validation import is_integer
from featuremap.errors import InputError, describe, input_key
from featuremap.io.axes import Axes, AxesSpec
from featuremap.io.placement import Interval

__all__ = ["InputSelection", "OpenInterval", "channel_indices", "region_intervals"]

#: A requested region along one axis (``None``: from the start, or to the end).
OpenInterval = tuple[int | None, int | None]


@dataclass(frozen=True)
class InputSelection:
    """What part of the input a job reads, and how to read its axes (``input.*`` keys).

    Attributes
    ----------
    axes : AxesSpec or None
        ``input.axes`` / ``--axes``, parsed (:func:`featuremap.io.axes.parse_axes_spec`).
    level : int, str or None
        The OME-Zarr resolution level (index or dataset path); default 0.
    region : mapping of axis name or kind to ``(start, stop)``
        ``input.region``; an axis left out is read whole.
    channels : tuple of int or str, or None
        ``input.channels``: channel indices, or labels (OME ``omero`` labels, xarray coordinate
        values); ``None`` reads every channel.
    channel_axis : int or None
        The older way to place the channel axis of an unnamed array.
    series : int or None
        The image series of a bioformats2raw layout (``input.series``); default 0.
    """

    axes: AxesSpec | None = None
    level: int | str | None = None
    region: Mapping[str, OpenInterval] = field(default_factory=dict)
    channels: tuple[int | str, ...] | None = None
    channel_axis: int | None = None
    series: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "axes": None
            if self.axes is None
            else (dict(self.axes) if isinstance(self.axes, Mapping) else list(self.axes)),
            "level": self.level,
            "region": {key: list(value) for key, value in self.region.items()},
            "channels": None if self.channels is None else list(self.channels),
            "channel_axis": self.channel_axis,
            # only when given: a fingerprint made before input.series existed stays the same
            **({} if self.series is None else {"series": self.series}),
        }


def _interval(value: Any, length: int, name: str) -> Interval:
    """``[start, stop)`` from ``[start, stop]`` (``None`` for an open end) or one index."""
    if is_integer(value):
        value = [value, int(value) + 1]
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(v is None or is_integer(v) for v in value)
    ):
        raise InputError(
            f"region {name}: must be [start, stop] (pixels, stop excluded) or one index, got {describe(value)}"
        )
    start = 0 if value[0] is None else int(value[0])
    stop = length if value[1] is None else int(value[1])
    if not 0 <= start < stop <= length:
        raise InputError(
            f"region {name}: [{start}, {stop}) is not inside the axis of length {length}; "
            f"give 0 <= start < stop <= {length}"
        )
    return start, stop


def region_intervals(
    axes: Axes, shape: Sequence[int], region: Mapping[str, Any]
) -> tuple[Interval, ...]:
    """Per stored axis, the ``[start, stop)`` that ``input.region`` reads (all of an axis it
    leaves out)."""
    intervals = [(0, n) for n in shape]
    given: dict[int, str] = {}
    for key, value in region.items():
        axis = axes.find(key)
        if axis == axes.channel:
            raise InputError(
                f"region {key}: select channels with {input_key('channels')}, not a region"
            )
        if axis in given:  # two names of one axis (its name and its kind): which one is meant?
            raise InputError(
                f"region {given[axis]} and region {key} select the same axis; give it once"
            )
        given[axis] = key
        intervals[axis] = _interval(value, shape[axis], key)
    return tuple(intervals)


def channel_indices(
    wanted: Sequence[int | str] | None, count: int, labels: Sequence[str] | None
) -> tuple[int, ...] | None:
    """The indices of the ``input.channels`` wanted (indices or labels); ``None``: all."""
    if wanted is None:
        return None
    if not wanted:
        raise InputError("channels: give at least one channel (an index or a label)")
    indices = []
    for item in wanted:
        if is_integer(item) and 0 <= int(item) < count:
            indices.append(int(item))
        elif isinstance(item, str) and labels is not None and item in labels:
            indices.append(list(labels).index(item))
        else:
            known = f"; labels: {', '.join(labels)}" if labels else ""
            raise InputError(
                f"channels: {describe(item)} is not a channel of the input (indices 0..{count - 1}{known})"
            )
    return tuple(indices)
