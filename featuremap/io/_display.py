"""Display metadata: the OME ``omero`` channels a viewer uses as they are.

Each feature's range is gathered while the job writes, never by reading the output again: a
block's writer computes per-feature statistics of the values it stores (:meth:`FeatureStats.of`,
after the conversion to the stored dtype, so a float16 store's windows are float16's values),
the task returns them, and the job's one marker writer merges them
(:meth:`FeatureStats.merge`) and saves the running total next to the done-markers before each
marker flush, so ``--resume`` starts from it. When the job completes, the total becomes each
channel's ``window`` (:func:`omero_channels`).

Only finite values count (a never-written block reads NaN; a float16 overflow is infinite). A
block recomputed after a crash -- its statistics saved, its marker not yet -- is counted twice:
its minimum and maximum are unchanged by that, its mean and spread barely.

The window rule: ``min`` / ``max`` are the data's range; ``start`` / ``end``, the contrast a
viewer opens with, are the mean -/+ :data:`WINDOW_SIGMAS` standard deviations, clipped to the
range -- robust to the few extreme pixels of edge and blob responses, exact to merge (a
percentile is not). The first :data:`ACTIVE_CHANNELS` features are ``active`` (visible), each
channel gets the next colour of :data:`COLOURS`, so the few layers a viewer shows at first
blend into something readable rather than 64 white layers adding up to a white screen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from featuremap.engine.cast import float16_row_sums, widen_into

__all__ = [
    "ACTIVE_CHANNELS",
    "COLOURS",
    "WINDOW_SIGMAS",
    "FeatureStats",
    "omero_channels",
]

#: Features shown (``active``) when a viewer opens a store: the first three.
ACTIVE_CHANNELS = 3
#: Channel colours in turn: magenta, green and cyan for the three shown (distinct, and told
#: apart by colour-blind readers), then yellow, red, blue.
COLOURS = ("FF00FF", "00FF00", "00FFFF", "FFFF00", "FF0000", "0000FF")
#: ``start`` / ``end`` of a window: the mean -/+ this many standard deviations, within the range.
WINDOW_SIGMAS = 3.0

#: Each field's key in the saved statistics (:meth:`FeatureStats.to_dict`).
_KEYS = {
    "count": "count",
    "mean": "mean",
    "m2": "m2",
    "low": "min",
    "high": "max",
    "overflow": "overflow",
}
#: Keys a store written before they were gathered may lack: read as zeros.
_OPTIONAL_KEYS = frozenset({"overflow"})


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Per-feature statistics of the finite values written: their ``count``, ``mean``, ``m2``
    (sum of squared deviations from the mean), ``low`` and ``high``; each an array with one
    value per feature (``low`` is ``+inf`` and ``high`` ``-inf`` where nothing was counted).
    ``overflow`` counts the values that were finite as computed and became infinite in the
    stored dtype (float16's range ends at +-65504): never silent, reported by ``status``,
    ``inspect`` and the run's summary."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    low: np.ndarray
    high: np.ndarray
    overflow: np.ndarray

    @classmethod
    def empty(cls, features: int) -> FeatureStats:
        zeros = np.zeros(features, dtype=np.float64)
        return cls(
            zeros.copy(),
            zeros.copy(),
            zeros.copy(),
            np.full(features, np.inf),
            np.full(features, -np.inf),
            zeros.copy(),
        )

    @classmethod
    def of(
        cls, values: np.ndarray, feature_axis: int, overflow: np.ndarray | None = None
    ) -> FeatureStats:
        """The statistics of one block, its features along ``feature_axis`` (``overflow``: per
        feature, the values the conversion to the stored dtype made infinite)."""
        stats = cls._of(values, feature_axis)
        if overflow is None:
            return stats
        return replace(stats, overflow=np.asarray(overflow, dtype=np.float64))

    @classmethod
    def _of(cls, values: np.ndarray, feature_axis: int) -> FeatureStats:
        rows = np.moveaxis(np.asarray(values), feature_axis, 0)
        rows = rows.reshape(rows.shape[0], -1)
        if rows.shape[1] == 0:
            return cls.empty(rows.shape[0])
        count = np.full(rows.shape[0], rows.shape[1], dtype=np.float64)
        shift, total, squares, low, high = _row_sums(rows)
        # a row's sums are finite exactly when all its values are
        finite = np.isfinite(total) & np.isfinite(squares)
        with np.errstate(invalid="ignore"):  # inf - inf in a row with inf: recomputed below
            spread = np.maximum(squares - total * total / count, 0.0)
        stats = cls(
            count,
            shift + total / count,
            spread,
            low,
            high,
            np.zeros(rows.shape[0], dtype=np.float64),
        )
        if finite.all():  # the usual block
            return stats
        return cls._stacked(
            [stats.feature(i) if ok else cls._of_row(rows[i]) for i, ok in enumerate(finite)]
        )

    @classmethod
    def _of_row(cls, row: np.ndarray) -> FeatureStats:
        finite = row[np.isfinite(row)].astype(np.float64)
        if finite.size == 0:
            return cls.empty(1)
        return cls(
            np.array([finite.size], dtype=np.float64),
            np.array([finite.mean()]),
            np.array([finite.var() * finite.size]),
            np.array([finite.min()]),
            np.array([finite.max()]),
            np.zeros(1),
        )

    @classmethod
    def _stacked(cls, rows: Sequence[FeatureStats]) -> FeatureStats:
        """One feature's statistics each (``rows``) stacked into one set."""
        return cls(*(np.concatenate([getattr(row, name) for row in rows]) for name in _KEYS))

    @property
    def features(self) -> int:
        return int(self.count.size)

    def feature(self, index: int) -> FeatureStats:
        """The statistics of feature ``index`` alone."""
        return FeatureStats(*(getattr(self, name)[index : index + 1] for name in _KEYS))

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Both sets together (Chan et al.'s pairwise update: exact in any order)."""
        count = self.count + other.count
        share = np.divide(other.count, count, out=np.zeros_like(count), where=count > 0)
        delta = other.mean - self.mean
        return FeatureStats(
            count,
            self.mean + delta * share,
            self.m2 + other.m2 + delta**2 * self.count * share,
            np.minimum(self.low, other.low),
            np.maximum(self.high, other.high),
            self.overflow + other.overflow,
        )

    @property
    def overflowed(self) -> int:
        """Values of all features that became infinite in the stored dtype."""
        return int(self.overflow.sum())

    def to_dict(self) -> dict[str, list[float | None]]:
        """JSON-ready lists (``None`` for the infinite bounds of a feature never counted)."""
        return {
            key: [float(v) if math.isfinite(v) else None for v in getattr(self, name).tolist()]
            for name, key in _KEYS.items()
        }

    @classmethod
    def from_dict(cls, value: Any, features: int) -> FeatureStats | None:
        """What :meth:`to_dict` wrote, for ``features`` features; ``None`` for anything else."""
        if not isinstance(value, Mapping):
            return None
        defaults = cls.empty(features)
        arrays = []
        for name, key in _KEYS.items():
            items = value.get(key)
            if items is None and key in _OPTIONAL_KEYS:
                items = [0.0] * features
            if not isinstance(items, list) or len(items) != features:
                return None
            # None stands for the infinite bounds of a feature never counted
            default = getattr(defaults, name)
            numbers = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in items]
            arrays.append(
                np.where(
                    numbers,
                    [v if ok else 0.0 for v, ok in zip(items, numbers, strict=True)],
                    default,
                )
            )
        return cls(*arrays)

    def window(self, feature: int) -> dict[str, float] | None:
        """The ``omero`` window of ``feature`` (see the module), ``None`` when none was counted."""
        count = float(self.count[feature])
        low, high = float(self.low[feature]), float(self.high[feature])
        if count <= 0 or not (math.isfinite(low) and math.isfinite(high)):
            return None
        spread = WINDOW_SIGMAS * math.sqrt(max(float(self.m2[feature]), 0.0) / count)
        mean = float(self.mean[feature])
        start, end = max(low, mean - spread), min(high, mean + spread)
        if end <= start:  # a constant feature: a window around its one value
            start, end = start - 0.5, start + 0.5
        return {"min": low, "max": high, "start": start, "end": end}


#: Values per step of :func:`_row_sums`: a 512 KiB float64 scratch, within a core's L2.
_SEGMENT = 65536


def _pieces(n_rows: int, length: int) -> list[tuple[slice, slice]]:
    """``(rows, columns)`` of pieces of at most :data:`_SEGMENT` values (one, where a row is
    longer): segments of each long row, or groups of whole short rows (a small block's
    features in one step, not one step each)."""
    if length >= _SEGMENT:
        return [
            (slice(row, row + 1), slice(start, start + _SEGMENT))
            for row in range(n_rows)
            for start in range(0, length, _SEGMENT)
        ]
    step = _SEGMENT // length
    return [(slice(row, row + step), slice(0, length)) for row in range(0, n_rows, step)]


def _row_sums(rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per row of ``rows`` (2-D, each row contiguous): a shift (the row's first value, 0 where
    it is not finite), the float64 sums of the values minus it and of their squares, the
    minimum and the maximum -- exact for finite rows; a row with NaN or inf has sums that are
    not finite (the caller recomputes it).

    One pass over the block, a segment at a time through an L2-sized float64 scratch (float16
    widened first, by the compiled loop when there): float64 sums without a float64 copy of the
    block; NumPy's ``sum(dtype=float64)`` of float32 and its ``einsum`` run a buffered cast at
    half this speed, and separate ``min``/``max`` passes read the block from memory again.
    Shifting by one of the row's own values keeps the sum of squares from cancelling when the
    mean is far from zero.
    """
    n_rows, length = rows.shape
    shift = rows[:, 0].astype(np.float64)
    shift[~np.isfinite(shift)] = 0.0
    compiled = float16_row_sums(rows, shift) if rows.dtype == np.float16 else None
    if compiled is not None:  # numba is loaded for a float16 store's cast anyway
        return shift, *compiled
    sums = np.zeros((4, n_rows))  # total, squares, low, high
    sums[2], sums[3] = np.inf, -np.inf
    wide = np.empty(min(_SEGMENT, n_rows * length))
    narrow = np.empty(wide.size, dtype=np.float32) if rows.dtype == np.float16 else None
    for lines, columns in _pieces(n_rows, length):
        part = rows[lines, columns]
        count, width = part.shape
        if narrow is not None:  # float16: widened a piece at a time (contiguous pieces only)
            widened = narrow[: part.size].reshape(count, width)
            widen_into(np.ascontiguousarray(part).reshape(-1), widened.reshape(-1))
            part = widened
        sums[2, lines] = np.fmin(sums[2, lines], part.min(axis=1))
        sums[3, lines] = np.fmax(sums[3, lines], part.max(axis=1))
        scratch = wide[: part.size].reshape(count, width)
        np.copyto(scratch, part)
        scratch -= shift[lines, None]
        sums[0, lines] += scratch.sum(axis=1)
        sums[1, lines] += np.einsum("ij,ij->i", scratch, scratch)
    return shift, *sums


def omero_channels(
    labels: Sequence[str], stats: FeatureStats | None = None
) -> list[dict[str, Any]]:
    """The ``omero`` channels of features ``labels``: the first :data:`ACTIVE_CHANNELS` active,
    :data:`COLOURS` in turn, each window from ``stats`` (before any is known, and for a feature
    without a finite value, ``[0, 1]``)."""
    channels = []
    for index, label in enumerate(labels):
        window = None if stats is None else stats.window(index)
        channels.append(
            {
                "label": label,
                "active": index < ACTIVE_CHANNELS,
                "color": COLOURS[index % len(COLOURS)],
                "window": window or {"min": 0.0, "max": 1.0, "start": 0.0, "end": 1.0},
            }
        )
    return channels
