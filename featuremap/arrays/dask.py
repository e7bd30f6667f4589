"""Lazy, chunk-exact Dask execution of a fused layer stack.

One task per output block computes *all* layers of the stack for that block:

* it reads exactly the input window the block needs (worked out backwards through the stack by
  :func:`featuremap.engine.blockplan.plan_axis`, border rules included) and depends on exactly the
  input chunks that window overlaps -- a halo may span several chunks, chunks may be ragged, and
  a circular border block reads the far edge without the chunks in between;
* intermediate maps live only inside the task, held compactly (the needed intervals of each
  layer), and are padded at their *true* image border only, never at chunk borders;
* output blocks are regular in ``y, x`` (so no block straddles a stride step), all features in
  one chunk, batch axes chunked like the input.

:func:`blockwise_stack` returns the result as a Dask array. The per-block compute is
:func:`featuremap.engine.fused.compute_compact`, shared with the job's block tasks.

Dask's task classes (``dask._task_spec``) are private: this module is the only place that
imports them (``tests/arrays/test_dask_private.py`` fails loudly if they move).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

# Private Dask API, isolated here: the graph refers to the layers once (DataNode) instead of
# embedding them in every task; tests/arrays/test_dask_private.py checks they still exist.
from dask._task_spec import DataNode, List, Task, TaskRef
from dask.array.utils import meta_from_array
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from featuremap._typing import Array
from featuremap._validation import parse_pair
from featuremap.engine.blockplan import AxisPlan, OutputGrid, Piece, output_grid, plan_axis
from featuremap.engine.fused import axis_steps, compute_compact, concatenate
from featuremap.engine.layers import Layer
from featuremap.engine.stack import ResolvedStack, resolve_stack
from featuremap.errors import InputError

__all__ = ["blockwise_stack"]

BlockIndex = tuple[int, ...]
#: A Dask key: ``(name, *index)``.
Key = tuple[Any, ...]
#: The bounds ``(y0, y1, x0, x1)`` of a halo strip cut from an input chunk.
Cut = tuple[int, int, int, int]


# --- planning ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StackPlan:
    """A stack resolved against an input: output grid and per-axis block plans."""

    x: da.Array  # the input, channel axis in one chunk
    layers: tuple[Layer, ...]
    grid: OutputGrid
    axis_plans: tuple[tuple[AxisPlan, ...], tuple[AxisPlan, ...]]  # per block along y, along x
    token: str

    def input_reads(self, block: BlockIndex) -> list[list[tuple[Key, Piece, Piece]]]:
        """``(input chunk key, y piece, x piece)`` for every piece of input the block reads."""
        *batch, iy, ix = block
        plan_y, plan_x = self.axis_plans[0][iy], self.axis_plans[1][ix]
        return [
            [((self.x.name, *batch, 0, y.chunk, x.chunk), y, x) for x in plan_x.reads]
            for y in plan_y.reads
        ]


def _parse_input(x: Any) -> da.Array:
    if not isinstance(x, da.Array):
        raise InputError(f"blockwise execution needs a Dask array, got {type(x).__name__}")
    if x.ndim < 3:
        raise InputError(
            f"input must have shape (..., channels, y, x), got shape {x.shape}; "
            "add a channel axis of length 1 for a single-channel image"
        )
    if any(np.isnan(n) for n in x.shape):
        raise InputError(
            f"input has unknown chunk sizes (shape {x.shape}); call compute_chunk_sizes() first"
        )
    if x.dtype.kind not in "biuf":
        raise InputError(f"input must be a numeric array, got dtype {x.dtype}")
    if len(x.chunks[-3]) > 1:  # every task needs all channels of its window
        x = x.rechunk({x.ndim - 3: -1})
    return x


def _plan(x: da.Array, stack: ResolvedStack, out_chunks: Any) -> _StackPlan:
    """Plan every output block of ``stack`` (resolved against ``x`` already) along each axis."""
    if stack.input_shape != tuple(x.shape[-3:]):
        raise InputError(
            f"the layer stack was resolved for an input (C, H, W) of {stack.input_shape}, "
            f"not {tuple(x.shape[-3:])}"
        )
    steps = axis_steps(stack)
    features, height, width = stack.output_shape
    if out_chunks is None:
        jump = stack.geometry.jump
        out_chunks = tuple(max(1, int(x.chunks[-2 + i][0] // jump[i])) for i in range(2))
    out_chunks = parse_pair("out_chunks", out_chunks)
    grid = output_grid((*x.shape[:-3], features, height, width), x.chunks[:-3], out_chunks)
    plans_y, plans_x = (
        tuple(
            plan_axis(steps[axis], start, start + size, x.chunks[-2 + axis])
            for start, size in zip(itertools.accumulate(sizes, initial=0), sizes, strict=False)
        )
        for axis, sizes in enumerate(grid.chunks[-2:])
    )
    return _StackPlan(
        x, stack.layers, grid, (plans_y, plans_x), tokenize(x.name, stack.layers, out_chunks)
    )


# --- the block function (runs on workers) ------------------------------------------------------


def _assemble(
    sources: list[list[Any]], own: tuple[tuple[bool, ...], ...], plan_y: AxisPlan, plan_x: AxisPlan
) -> Array:
    """The block's compact input: its pieces of input, concatenated.

    A piece of the block's own (home) chunk is sliced from the chunk; a halo piece comes
    ready-cut from the neighbouring chunk's :func:`_cut_halos` result.
    """
    rows = [
        [
            source[..., y.start : y.stop, x.start : x.stop]
            if is_own
            else source[(y.start, y.stop, x.start, x.stop)]
            for source, is_own, x in zip(row, own_row, plan_x.reads, strict=False)
        ]
        for row, own_row, y in zip(sources, own, plan_y.reads, strict=False)
    ]
    return concatenate([concatenate(row, -1) for row in rows], -2)


def _cut_halos(chunk: Array, cuts: tuple[Cut, ...]) -> dict[Cut, Array]:
    """Copies of the pieces of ``chunk`` that neighbouring blocks read, keyed by their bounds.

    Copies, not views, so the (large) chunk can be freed as soon as its own block has run: a
    worker then holds only thin halo strips for blocks still to come, whatever the image size.
    """
    return {cut: chunk[..., cut[0] : cut[1], cut[2] : cut[3]].copy() for cut in cuts}


def _compute_block(
    layers: Sequence[Layer],
    plan_y: AxisPlan,
    plan_x: AxisPlan,
    sources: list[list[Any]],
    own: tuple[tuple[bool, ...], ...],
) -> Array:
    """The fused stack on one output block, from its input ``sources`` (see :func:`_assemble`)."""
    return compute_compact(layers, plan_y, plan_x, _assemble(sources, own, plan_y, plan_x))


# --- the graph ---------------------------------------------------------------------------------


def _home_chunk(reads: list[list[tuple[Key, Piece, Piece]]]) -> Key:
    """The input chunk a block reads most of: it takes that chunk whole, the rest as halos."""
    area: dict[Key, int] = {}
    for row in reads:
        for chunk, y, x in row:
            area[chunk] = area.get(chunk, 0) + (y.stop - y.start) * (x.stop - x.start)
    return max(area, key=area.__getitem__)


def _graph(plan: _StackPlan, name: str) -> HighLevelGraph:
    """One task per output block, plus one halo-cutting task per input chunk that other blocks
    read a halo from.

    A block depends on its home chunk whole and on the halo tasks of its neighbours, so a
    chunk is released once its own block and its halo task have run (map_overlap would keep
    every chunk until all of its neighbours are done: memory growing with the image width).
    The layers (with their weights) are one graph node every task refers to, not a copy per task.
    """
    layers_key = f"{name}-layers"
    layer: dict[Any, Any] = {layers_key: DataNode(layers_key, plan.layers)}
    reads = {block: plan.input_reads(block) for block in plan.grid.blocks()}
    homes = {block: _home_chunk(block_reads) for block, block_reads in reads.items()}
    cuts: dict[Key, set[Cut]] = {}
    for block, block_reads in reads.items():
        for row in block_reads:
            for chunk, y, x in row:
                if chunk != homes[block]:
                    cuts.setdefault(chunk, set()).add((y.start, y.stop, x.start, x.stop))
    halo_keys = {chunk: (f"{name}-halo", *chunk[1:]) for chunk in cuts}
    for chunk, chunk_cuts in cuts.items():
        layer[halo_keys[chunk]] = Task(
            halo_keys[chunk], _cut_halos, TaskRef(chunk), tuple(sorted(chunk_cuts))
        )
    for block, block_reads in reads.items():
        *batch, iy, ix = block
        key = (name, *batch, 0, iy, ix)
        own = tuple(tuple(chunk == homes[block] for chunk, _, _ in row) for row in block_reads)
        sources = List(
            *(
                List(
                    *(
                        TaskRef(chunk if chunk == homes[block] else halo_keys[chunk])
                        for chunk, _, _ in row
                    )
                )
                for row in block_reads
            )
        )
        layer[key] = Task(
            key,
            _compute_block,
            TaskRef(layers_key),
            plan.axis_plans[0][iy],
            plan.axis_plans[1][ix],
            sources,
            own,
        )
    return HighLevelGraph.from_collections(name, layer, dependencies=[plan.x])


def blockwise_stack(
    x: da.Array,
    layers: Sequence[Layer] | ResolvedStack,
    *,
    out_chunks: tuple[int, int] | None = None,
) -> da.Array:
    """A layer stack applied lazily and chunk-exactly to a Dask array.

    Parameters
    ----------
    x : dask.array.Array of shape ``(..., C, H, W)``
        Any numeric dtype (converted to float32 inside the tasks); NumPy or CuPy chunks.
    layers : sequence of ConvLayer, PoolLayer or ReduceLayer, or a ResolvedStack
        Applied in order, fused: one task per output block computes all of them. A stack
        already resolved against ``x`` is used as it is.
    out_chunks : (int, int), optional
        Output block size along ``y, x``; default: the input's first chunk size divided by the
        stack's jump (at least 1).

    Returns
    -------
    dask.array.Array of shape ``(..., J, H_out, W_out)``, float32
        Batch axes chunked like ``x``, features in one chunk, regular spatial chunks.
    """
    x = _parse_input(x)
    if not isinstance(layers, ResolvedStack):
        layers = resolve_stack(tuple(layers), x.shape[-2:], x.shape[-3])
    plan = _plan(x, layers, out_chunks)
    name = f"featuremap-stack-{plan.token}"
    graph = _graph(plan, name)
    meta = meta_from_array(plan.x._meta, ndim=len(plan.grid.shape), dtype=np.float32)
    return da.Array(graph, name, plan.grid.chunks, meta=meta)
