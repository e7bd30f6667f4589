"""Planning of chunk-exact output blocks: pure integer arithmetic, one spatial axis at a time.

For one output block ``[a, b)`` of the last layer of a stack, :func:`plan_axis` works backwards
through the layers. At each layer the needed outputs (a sorted list of disjoint intervals, the
*runs*) read a *virtual* input interval each (:meth:`AxisLayer.input_interval`, running into the
padding), which the layer's padding mode folds onto the *valid* input coordinates it really reads:

* ``zeros`` or ``constant`` (pool padding): clip, the outside is a constant and needs nothing;
* ``replicate``: clip, the edge pixel is read;
* ``reflect``: coordinate ``c < 0`` reads ``-c``, ``c > n - 1`` reads ``2 (n - 1) - c``;
* ``circular``: ``c mod n``, kept as separate intervals (a left border block also needs the
  right edge, not the whole axis).

Intervals closer than a few kernel reaches are merged (computing the gap is cheaper than an extra
run); only the wrap of ``circular`` leaves big gaps. The valid input intervals of layer ``l`` are
the needed output runs of layer ``l - 1``; those of the first layer are split into input chunk
pieces (:class:`Piece`).

Going forwards, a layer's values are held compactly: the concatenation of its needed intervals.
Each run gathers its virtual padded input from that compact array as at most three
:class:`Segment` s (low border, inside, high border), so the block function never builds index
arrays and an interior run is a plain slice (a view).

Also here: :class:`OutputGrid`, the regular block grid of a stack's output (2-D or 3-D).
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

from featuremap._vocabulary import BorderMode
from featuremap.engine.geometry import AxisLayer

__all__ = [
    "AxisPlan",
    "AxisStep",
    "Gather",
    "Level",
    "OutputGrid",
    "Piece",
    "Segment",
    "fold",
    "merge",
    "output_grid",
    "plan_axis",
]

Interval = tuple[int, int]

#: Intervals closer than this many kernel reaches (at least one pixel's worth) are merged.
MERGE_REACHES = 4


@dataclass(frozen=True)
class AxisStep:
    """One layer along one axis: its resolved geometry (padding mode included) and input length."""

    layer: AxisLayer
    size: int

    @property
    def merge_gap(self) -> int:
        return MERGE_REACHES * max(self.layer.reach, 1)


@dataclass(frozen=True)
class Segment:
    """Part of a run's virtual padded input, in compact indices of the layer's input.

    ``kind`` is ``slice`` (``start:stop``), ``reversed`` (``stop-1`` down to ``start``),
    ``repeat`` (index ``start`` repeated ``length`` times) or ``fill`` (``length`` constants).
    """

    kind: str
    start: int
    stop: int
    length: int


@dataclass(frozen=True)
class Gather:
    """The virtual padded input of one run: its segments, in order."""

    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Level:
    """One layer of one block along one axis: needed output runs and the gather of each, and
    the layer's input length along the axis."""

    runs: tuple[Interval, ...]
    gathers: tuple[Gather, ...]
    size: int = 0


@dataclass(frozen=True)
class Piece:
    """A part of an input chunk the block reads: chunk index, local ``[start, stop)``."""

    chunk: int
    start: int
    stop: int


@dataclass(frozen=True)
class AxisPlan:
    """Everything one output block needs along one axis.

    ``reads`` are the input chunk pieces whose concatenation is the compact input; ``levels``
    has one :class:`Level` per layer, first layer first.
    """

    reads: tuple[Piece, ...]
    levels: tuple[Level, ...]


def merge(intervals: Sequence[Interval], gap: int = 0) -> list[Interval]:
    """Sort intervals and merge those that overlap, touch or lie at most ``gap`` apart."""
    merged: list[list[int]] = []
    for start, stop in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start - merged[-1][1] <= gap:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return [(start, stop) for start, stop in merged]


def fold(start: int, stop: int, size: int, mode: BorderMode) -> list[Interval]:
    """Valid coordinates in ``[0, size)`` that the virtual interval ``[start, stop)`` reads
    under the border ``mode`` (``zeros`` and ``constant`` read nothing outside)."""
    # the parts in the padding: [start, low_stop) below the axis, [high_start, stop) above it
    low_stop, high_start = min(stop, 0), max(start, size)
    inside = [(max(start, 0), min(stop, size))]
    if mode == "replicate":
        inside += [(0, 1)] * (start < low_stop) + [(size - 1, size)] * (high_start < stop)
    elif mode == "reflect":
        inside += [(1 - low_stop, 1 - start), (2 * size - 1 - stop, 2 * size - 1 - high_start)]
    elif mode == "circular":
        inside += [(size + start, size + low_stop), (high_start - size, stop - size)]
    return merge(inside)


def _locate(
    intervals: Sequence[Interval], starts: Sequence[int], offsets: Sequence[int], coordinate: int
) -> int:
    """Compact index of ``coordinate`` in the concatenation of ``intervals`` (``starts``: theirs)."""
    position = bisect_right(starts, coordinate) - 1
    start, stop = intervals[position]
    if not start <= coordinate < stop:
        raise AssertionError(f"coordinate {coordinate} is not among the planned {intervals}")
    return offsets[position] + coordinate - start


def _segments(run: Interval, step: AxisStep, needed: Sequence[Interval]) -> Gather:
    """Segments of the virtual padded input of ``run`` in compact input indices."""
    start, stop = step.layer.input_interval(*run)
    size, mode = step.size, step.layer.padding_mode
    starts = [a for a, _ in needed]
    offsets = list(itertools.accumulate((b - a for a, b in needed), initial=0))

    def index(coordinate: int) -> int:
        return _locate(needed, starts, offsets, coordinate)

    def ascending(first: int, last: int) -> Segment:
        return Segment("slice", index(first), index(last) + 1, last - first + 1)

    def descending(first: int, last: int) -> Segment:  # coordinates first, first-1, ..., last
        return Segment("reversed", index(last), index(first) + 1, first - last + 1)

    segments = []
    low_stop, high_start = min(stop, 0), max(start, size)  # padding parts, as in fold()
    low, high = low_stop - start, stop - high_start
    if low > 0:
        segments.append(
            {
                "zeros": lambda: Segment("fill", 0, 0, low),
                "constant": lambda: Segment("fill", 0, 0, low),
                "replicate": lambda: Segment("repeat", index(0), index(0) + 1, low),
                "reflect": lambda: descending(-start, 1 - low_stop),
                "circular": lambda: ascending(size + start, size + low_stop - 1),
            }[mode]()
        )
    if max(start, 0) < min(stop, size):
        segments.append(ascending(max(start, 0), min(stop, size) - 1))
    if high > 0:
        segments.append(
            {
                "zeros": lambda: Segment("fill", 0, 0, high),
                "constant": lambda: Segment("fill", 0, 0, high),
                "replicate": lambda: Segment("repeat", index(size - 1), index(size - 1) + 1, high),
                "reflect": lambda: descending(2 * size - 2 - high_start, 2 * size - 1 - stop),
                "circular": lambda: ascending(high_start - size, stop - 1 - size),
            }[mode]()
        )
    return Gather(tuple(segments))


def _split_into_chunks(intervals: Sequence[Interval], bounds: Sequence[int]) -> tuple[Piece, ...]:
    """Pieces of input chunks (``bounds``: cumulative chunk edges) covering ``intervals``."""
    pieces = []
    for start, stop in intervals:
        chunk = bisect_right(bounds, start) - 1
        while start < stop:
            end = min(stop, bounds[chunk + 1])
            pieces.append(Piece(chunk, start - bounds[chunk], end - bounds[chunk]))
            start, chunk = end, chunk + 1
    return tuple(pieces)


def plan_axis(
    steps: Sequence[AxisStep], out_start: int, out_stop: int, chunk_sizes: Sequence[int]
) -> AxisPlan:
    """Plan output block ``[out_start, out_stop)`` of a stack along one axis.

    Parameters
    ----------
    steps : the stack's layers along this axis, first layer first.
    out_start, out_stop : the block's output range in the last layer.
    chunk_sizes : the input's chunk sizes along this axis (may be ragged).
    """
    runs: list[Interval] = [(out_start, out_stop)]
    levels = []
    for step in reversed(steps):
        read = [
            interval
            for run in runs
            for interval in fold(
                *step.layer.input_interval(*run), step.size, step.layer.padding_mode
            )
        ]
        # a run entirely in constant padding reads nothing; keep one pixel so every layer has
        # a (tiny) compact array and the block still knows its array type and batch shape
        needed = merge(read, step.merge_gap) or [(0, 1)]
        gathers = tuple(_segments(run, step, needed) for run in runs)
        levels.append(Level(tuple(runs), gathers, step.size))
        runs = needed
    bounds = list(itertools.accumulate(chunk_sizes, initial=0))
    return AxisPlan(_split_into_chunks(runs, bounds), tuple(reversed(levels)))


@dataclass(frozen=True)
class OutputGrid:
    """The block grid of a stack's output ``(*batch, feature, *spatial)``, ``ndim`` spatial axes.

    Batch axes keep the input's chunks, the feature axis is one chunk and the spatial axes are
    cut into regular chunks. A block index is ``(*batch_block, *spatial_block)`` (no feature
    index): ``(..., iy, ix)``, or ``(..., iz, iy, ix)`` in 3-D.
    """

    shape: tuple[int, ...]
    chunks: tuple[tuple[int, ...], ...]
    ndim: int = 2

    @property
    def feature_axis(self) -> int:
        return len(self.chunks) - self.ndim - 1

    @property
    def numblocks(self) -> tuple[int, ...]:
        """Blocks per axis, feature axis left out (the shape of the block index space)."""
        return tuple(len(c) for i, c in enumerate(self.chunks) if i != self.feature_axis)

    def __len__(self) -> int:
        count = 1
        for n in self.numblocks:
            count *= n
        return count

    def blocks(self) -> Iterator[tuple[int, ...]]:
        """Every block index, in C order."""
        return itertools.product(*(range(n) for n in self.numblocks))

    def slices(self, block: Sequence[int]) -> tuple[slice, ...]:
        """Where ``block`` lies in the full output (all axes; feature axis ``slice(0, J)``)."""
        split = len(block) - self.ndim
        per_axis = [*block[:split], 0, *block[split:]]
        if len(per_axis) != len(self.chunks) or not all(
            0 <= index < len(sizes) for index, sizes in zip(per_axis, self.chunks, strict=False)
        ):
            raise IndexError(f"block {tuple(block)} is outside the grid {self.numblocks}")
        return tuple(
            slice(edges[index], edges[index + 1])
            for index, edges in zip(per_axis, self._edges, strict=False)
        )

    @cached_property
    def _edges(self) -> tuple[tuple[int, ...], ...]:
        """Cumulative chunk edges per axis, ``(0, c0, c0 + c1, ...)``."""
        return tuple(tuple(itertools.accumulate(sizes, initial=0)) for sizes in self.chunks)


def _regular(length: int, size: int) -> tuple[int, ...]:
    return (size,) * (length // size) + ((length % size,) if length % size else ())


def output_grid(
    shape_out: Sequence[int], batch_chunks: Sequence[Sequence[int]], out_chunks: Sequence[int]
) -> OutputGrid:
    """The block grid of an output of shape ``(*batch, J, *spatial_out)``.

    ``batch_chunks`` are the batch axes' chunks (Dask style), ``out_chunks`` the regular
    spatial block size (``(y, x)`` or ``(z, y, x)``: its length is the spatial rank).
    """
    ndim = len(out_chunks)
    sizes = [int(n) for n in shape_out]
    spatial = sizes[len(sizes) - ndim :]
    chunks = (
        *(tuple(int(c) for c in sizes) for sizes in batch_chunks),
        (sizes[-ndim - 1],),
        *(_regular(length, int(size)) for length, size in zip(spatial, out_chunks, strict=True)),
    )
    return OutputGrid(tuple(sizes), chunks, ndim)
