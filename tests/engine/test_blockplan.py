"""Interval planning (``featuremap.engine.blockplan``): pure integer arithmetic, checked on hand-worked
cases and, with hypothesis, against brute force:

* :func:`fold` returns exactly the valid coordinates a virtual interval reads, for every border
  mode (``zeros``, ``constant``, ``replicate``, ``reflect``, ``circular``);
* :func:`merge` returns sorted intervals, apart by more than ``gap``, covering its input and
  adding nothing but gaps of at most ``gap``;
* :func:`plan_axis` reads every input coordinate a block needs, and executing its plan (reads,
  runs, gathers) on a 1-D signal gives exactly the block of a direct whole-signal computation.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from featuremap.engine.blockplan import AxisPlan, AxisStep, Piece, Segment, fold, merge, plan_axis
from featuremap.engine.geometry import AxisLayer

MODES = ("zeros", "constant", "replicate", "reflect", "circular")
#: np.pad's name of each border mode (constant padding is 0 in these 1-D simulations)
NUMPY_MODES = {
    "zeros": "constant",
    "constant": "constant",
    "replicate": "edge",
    "reflect": "reflect",
    "circular": "wrap",
}


# --- hand-worked cases -------------------------------------------------------------------------


def test_fold_and_merge():
    assert fold(-3, 5, 10, "constant") == [(0, 5)]
    assert fold(-3, 5, 10, "replicate") == [(0, 5)]
    assert fold(-3, 2, 10, "reflect") == [(0, 4)]
    assert fold(8, 13, 10, "reflect") == [(6, 10)]
    assert fold(-3, 2, 10, "circular") == [(0, 2), (7, 10)]
    assert fold(-5, -2, 10, "circular") == [(5, 8)]
    assert fold(-5, -2, 10, "reflect") == [(3, 6)]
    assert fold(11, 13, 10, "circular") == [(1, 3)]
    assert merge([(6, 8), (0, 2), (3, 4)], gap=1) == [(0, 4), (6, 8)]
    assert merge([(0, 2), (2, 3), (9, 9)]) == [(0, 3)]


def test_plan_axis_circular_stack_keeps_the_wrap_apart():
    """conv k=5 circular p=2, then conv k=3 circular p=1, on 100 pixels in chunks of 20."""
    steps = [
        AxisStep(AxisLayer(5, pad_lo=2, pad_hi=2, padding_mode="circular"), 100),
        AxisStep(AxisLayer(3, pad_lo=1, pad_hi=1, padding_mode="circular"), 100),
    ]
    plan = plan_axis(steps, 0, 10, [20] * 5)
    first, second = plan.levels
    assert second.runs == ((0, 10),)
    assert first.runs == ((0, 11), (99, 100))  # the second layer wraps to the first's last output
    assert plan.reads == (
        Piece(0, 0, 13),
        Piece(4, 17, 20),
    )  # outputs 99 and 0..10 read 97..99, 0..12
    # the second layer's run gathers output 99, then outputs 0..10: two ascending slices
    assert [(s.kind, s.start, s.stop) for s in second.gathers[0].segments] == [
        ("slice", 11, 12),
        ("slice", 0, 11),
    ]
    interior = plan_axis(steps, 40, 50, [20] * 5)
    assert interior.reads == (Piece(1, 17, 20), Piece(2, 0, 13))
    assert all(
        len(g.segments) == 1 and g.segments[0].kind == "slice"
        for lv in interior.levels
        for g in lv.gathers
    )


# --- brute force -------------------------------------------------------------------------------


def read_coordinate(c: int, size: int, mode: str) -> int | None:
    """The valid coordinate that virtual coordinate ``c`` reads (None: constant padding)."""
    if 0 <= c < size:
        return c
    if mode in ("zeros", "constant"):
        return None
    if mode == "replicate":
        return min(max(c, 0), size - 1)
    if mode == "reflect":
        return -c if c < 0 else 2 * (size - 1) - c
    return c % size  # circular


def virtual_limits(size: int, mode: str) -> tuple[int, int]:
    """Virtual coordinates ``[low, high)`` a border mode can reach (PyTorch: reflect padding
    below the input size, circular padding at most the input size; constant and replicate any)."""
    if mode == "reflect":
        return -(size - 1), 2 * size - 1
    if mode == "circular":
        return -size, 2 * size
    return -25, size + 25


def points(intervals) -> set[int]:
    """The integers the half-open ``intervals`` cover."""
    return {c for start, stop in intervals for c in range(start, stop)}


def assert_sorted_and_apart(intervals, gap: int = 0) -> None:
    assert all(start < stop for start, stop in intervals), intervals
    assert all(stop + gap < start for (_, stop), (start, _) in itertools.pairwise(intervals)), (
        intervals
    )


@st.composite
def virtual_intervals(draw) -> tuple[int, int, int, str]:
    size = draw(st.integers(1, 30))
    mode = draw(st.sampled_from(MODES))
    low, high = virtual_limits(size, mode)
    start = draw(st.integers(low, high - 1))
    stop = draw(st.integers(start + 1, high))
    return start, stop, size, mode


@settings(max_examples=300, deadline=None)
@given(virtual_intervals())
def test_fold_reads_exactly_the_folded_coordinates(case):
    start, stop, size, mode = case
    folded = fold(start, stop, size, mode)
    expected = {read_coordinate(c, size, mode) for c in range(start, stop)} - {None}
    assert points(folded) == expected
    assert_sorted_and_apart(folded)  # merged: no two intervals touch
    assert all(a >= 0 and b <= size for a, b in folded)


intervals = st.tuples(st.integers(-20, 60), st.integers(-2, 15)).map(lambda p: (p[0], p[0] + p[1]))


@settings(max_examples=200, deadline=None)
@given(st.lists(intervals, max_size=12), st.integers(0, 5))
def test_merge_is_sorted_apart_and_covers_only_its_input_and_small_gaps(given_intervals, gap):
    merged = merge(given_intervals, gap)
    covered = points(given_intervals)
    assert_sorted_and_apart(merged, gap)
    assert covered <= points(merged)
    non_empty = [(a, b) for a, b in given_intervals if b > a]
    assert {a for a, _ in merged} <= {a for a, _ in non_empty}
    assert {b for _, b in merged} <= {b for _, b in non_empty}
    for start, stop in merged:  # what merging added: holes of at most `gap` pixels
        holes = [c for c in range(start, stop) if c not in covered]
        for _, run in itertools.groupby(enumerate(holes), key=lambda ic: ic[1] - ic[0]):
            assert len(list(run)) <= gap
    if gap == 0:
        assert points(merged) == covered


# --- plan_axis against a direct computation ----------------------------------------------------


@st.composite
def planned_blocks(draw) -> tuple[list[AxisStep], int, int, list[int]]:
    """A stack of 1-3 layers along one axis that fits its input, an output block of the last
    layer and a (ragged) chunking of the input."""
    size = draw(st.integers(1, 40))
    steps, n = [], size
    for _ in range(draw(st.integers(1, 3))):
        mode = draw(st.sampled_from(MODES))
        limit = {"reflect": n - 1, "circular": n}.get(mode, 6)
        layer = AxisLayer(
            kernel=draw(st.integers(1, 5)),
            stride=draw(st.integers(1, 3)),
            dilation=draw(st.integers(1, 3)),
            pad_lo=draw(st.integers(0, min(limit, 6))),
            pad_hi=draw(st.integers(0, min(limit, 6))),
            padding_mode=mode,
        )
        if n + layer.pad_lo + layer.pad_hi < layer.reach + 1:
            break  # does not fit: the stack ends here
        steps.append(AxisStep(layer, n))
        n = layer.output_length(n)
    assume(steps)
    out_start = draw(st.integers(0, n - 1))
    out_stop = draw(st.integers(out_start + 1, n))
    cuts = draw(st.sets(st.integers(1, size - 1), max_size=6)) if size > 1 else set()
    edges = [0, *sorted(cuts), size]
    return steps, out_start, out_stop, [b - a for a, b in itertools.pairwise(edges)]


def correlate(padded: np.ndarray, weights: np.ndarray, layer: AxisLayer, n_out: int) -> np.ndarray:
    """A 1-D strided, dilated correlation of an already padded signal."""
    taps = [
        padded[
            t * layer.dilation : t * layer.dilation + (n_out - 1) * layer.stride + 1 : layer.stride
        ]
        for t in range(layer.kernel)
    ]
    return sum(w * tap for w, tap in zip(weights, taps, strict=False))


def direct(steps, signal: np.ndarray, weights) -> np.ndarray:
    """The whole stack on the whole signal, borders padded by NumPy."""
    x = signal
    for step, w in zip(steps, weights, strict=False):
        layer = step.layer
        padded = np.pad(x, (layer.pad_lo, layer.pad_hi), mode=NUMPY_MODES[layer.padding_mode])
        x = correlate(padded, w, layer, layer.output_length(len(x)))
    return x


def segment_values(compact: np.ndarray, segment: Segment) -> np.ndarray:
    if segment.kind == "slice":
        return compact[segment.start : segment.stop]
    if segment.kind == "reversed":
        return compact[segment.start : segment.stop][::-1]
    if segment.kind == "repeat":
        assert segment.stop == segment.start + 1
        return np.repeat(compact[segment.start], segment.length)
    assert segment.kind == "fill"
    return np.zeros(segment.length)


def execute(plan: AxisPlan, steps, signal: np.ndarray, weights, chunk_sizes) -> np.ndarray:
    """Run a plan as the block function does: concatenated chunk pieces, then per layer and run
    the gathered virtual input and the correlation; the runs' outputs are the next compact input."""
    edges = list(itertools.accumulate(chunk_sizes, initial=0))
    compact = np.concatenate(
        [signal[edges[p.chunk] + p.start : edges[p.chunk] + p.stop] for p in plan.reads]
    )
    for step, level, w in zip(steps, plan.levels, weights, strict=True):
        layer, outputs = step.layer, []
        for (run_start, run_stop), gather in zip(level.runs, level.gathers, strict=True):
            padded = np.concatenate([segment_values(compact, s) for s in gather.segments])
            n_out = run_stop - run_start
            assert len(padded) == (n_out - 1) * layer.stride + layer.reach + 1
            outputs.append(correlate(padded, w, layer, n_out))
        compact = np.concatenate(outputs)
    return compact


def needed_inputs(steps, out_start: int, out_stop: int) -> set[int]:
    """Brute force: every valid input coordinate the block's outputs depend on."""
    needed = set(range(out_start, out_stop))
    for step in reversed(steps):
        layer = step.layer
        needed = {
            read_coordinate(
                i * layer.stride - layer.pad_lo + t * layer.dilation, step.size, layer.padding_mode
            )
            for i in needed
            for t in range(layer.kernel)
        } - {None}
    return needed


@settings(max_examples=150, deadline=None)
@given(planned_blocks(), st.integers(0, 2**32 - 1))
def test_plan_axis_reads_what_the_block_needs_and_computes_it(case, seed):
    steps, out_start, out_stop, chunk_sizes = case
    plan = plan_axis(steps, out_start, out_stop, chunk_sizes)
    assert len(plan.levels) == len(steps)
    assert plan.levels[-1].runs == ((out_start, out_stop),)

    # the reads: pieces inside their chunks, in order, never overlapping, covering what is needed
    edges = list(itertools.accumulate(chunk_sizes, initial=0))
    read = [(edges[p.chunk] + p.start, edges[p.chunk] + p.stop) for p in plan.reads]
    assert all(0 <= p.start < p.stop <= chunk_sizes[p.chunk] for p in plan.reads)
    assert all(b <= a for (_, b), (a, _) in itertools.pairwise(read))
    assert needed_inputs(steps, out_start, out_stop) <= points(read)
    for level in plan.levels:
        assert_sorted_and_apart(level.runs)

    rng = np.random.default_rng(seed)
    signal = rng.standard_normal(steps[0].size)
    weights = [rng.standard_normal(step.layer.kernel) for step in steps]
    expected = direct(steps, signal, weights)[out_start:out_stop]
    np.testing.assert_allclose(
        execute(plan, steps, signal, weights, chunk_sizes), expected, rtol=1e-12, atol=1e-12
    )
