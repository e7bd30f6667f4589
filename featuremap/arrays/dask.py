"""Lazy, chunk-exact Dask execution of a fused layer stack.

One task per output block computes *all* layers of the stack for that block:

* it reads exactly the input window the block needs (worked out backwards through the stack by
  :func:`featuremap.engine.blockplan.plan_axis`, border rules included) and depends on exactly the
  input chunks that window overlaps -- a halo may span several chunks, chunks may be ragged, and
  a circular border block reads the far edge without the chunks in between;
* intermediate maps live only inside the task, held compactly (the needed intervals of each
  layer), and are padded at their *true* image border only, never at chunk borders;
* output blocks are regular in ``y, x`` (``z, y, x`` for a 3-D stack; so no block straddles a
  stride step), all features in one chunk, batch axes chunked like the input.

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
from featuremap._validation import parse_sizes
from featuremap.engine.blockplan import AxisPlan, OutputGrid, Piece, output_grid, plan_axis
from featuremap.engine.fused import axis_steps, compute_compact, concatenate
from featuremap.engine.geometry import axis_names
from featuremap.engine.layers import Layer
from featuremap.engine.stack import ResolvedStack, resolve_stack, stack_ndim
from featuremap.errors import InputError

__all__ = ["blockwise_stack"]

BlockIndex = tuple[int, ...]
#: A Dask key: ``(name, *index)``.
Key = tuple[Any, ...]
#: The bounds ``(y0, y1, x0, x1)`` (``(z0, z1, y0, y1, x0, x1)`` in 3-D) of a halo strip cut
#: from an input chunk.
Cut = tuple[int, ...]
#: One piece of input a block reads: the chunk's key and the piece along each spatial axis.
Read = tuple[Key, tuple[Piece, ...]]


# --- planning ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StackPlan:
    """A stack resolved against an input: output grid and per-axis block plans."""

    x: da.Array  # the input, channel axis in one chunk
    layers: tuple[Layer, ...]
    grid: OutputGrid
    axis_plans: tuple[tuple[AxisPlan, ...], ...]  # per spatial axis, per block along it
    token: str

    def block_plans(self, block: BlockIndex) -> tuple[AxisPlan, ...]:
        """The block's plan along each spatial axis."""
        spatial = block[len(block) - len(self.axis_plans) :]
        return tuple(plans[i] for plans, i in zip(self.axis_plans, spatial, strict=True))

    def input_reads(self, block: BlockIndex) -> list[Read]:
        """``(input chunk key, pieces)`` for every piece of input the block reads, in C order
        over the spatial axes (the product of the axes' reads)."""
        batch = tuple(block[: len(block) - len(self.axis_plans)])
        return [
            ((self.x.name, *batch, 0, *(piece.chunk for piece in pieces)), pieces)
            for pieces in itertools.product(*(plan.reads for plan in self.block_plans(block)))
        ]


def _parse_input(x: Any, ndim: int) -> da.Array:
    if not isinstance(x, da.Array):
        raise InputError(f"blockwise execution needs a Dask array, got {type(x).__name__}")
    if x.ndim < ndim + 1:
        raise InputError(
            f"input must have shape (..., channels, {', '.join(axis_names(ndim))}), got shape "
            f"{x.shape}; add a channel axis of length 1 for a single-channel image"
        )
    if any(np.isnan(n) for n in x.shape):
        raise InputError(
            f"input has unknown chunk sizes (shape {x.shape}); call compute_chunk_sizes() first"
        )
    if x.dtype.kind not in "biuf":
        raise InputError(f"input must be a numeric array, got dtype {x.dtype}")
    if len(x.chunks[-ndim - 1]) > 1:  # every task needs all channels of its window
        x = x.rechunk({x.ndim - ndim - 1: -1})
    return x


def _plan(x: da.Array, stack: ResolvedStack, out_chunks: Any) -> _StackPlan:
    """Plan every output block of ``stack`` (resolved against ``x`` already) along each axis."""
    ndim = stack.ndim
    if stack.input_shape != tuple(x.shape[-ndim - 1 :]):
        raise InputError(
            f"the layer stack was resolved for an input (C, *spatial) of {stack.input_shape}, "
            f"not {tuple(x.shape[-ndim - 1 :])}"
        )
    steps = axis_steps(stack)
    spatial_chunks = x.chunks[-ndim:]
    if out_chunks is None:
        jump = stack.geometry.jump
        out_chunks = tuple(max(1, int(spatial_chunks[i][0] // jump[i])) for i in range(ndim))
    out_chunks = parse_sizes("out_chunks", out_chunks, ndim)
    batch = x.shape[: -ndim - 1]
    grid = output_grid((*batch, *stack.output_shape), x.chunks[: -ndim - 1], out_chunks)
    axis_plans = tuple(
        tuple(
            plan_axis(steps[axis], start, start + size, spatial_chunks[axis])
            for start, size in zip(itertools.accumulate(sizes, initial=0), sizes, strict=False)
        )
        for axis, sizes in enumerate(grid.chunks[-ndim:])
    )
    return _StackPlan(x, stack.layers, grid, axis_plans, tokenize(x.name, stack.layers, out_chunks))


# --- the block function (runs on workers) ------------------------------------------------------


def _cut_bounds(pieces: Sequence[Piece]) -> Cut:
    return tuple(bound for piece in pieces for bound in (piece.start, piece.stop))


def _cut_index(cut: Cut) -> tuple[Any, ...]:
    return (Ellipsis, *(slice(cut[i], cut[i + 1]) for i in range(0, len(cut), 2)))


def _join(parts: list[Array], counts: Sequence[int]) -> Array:
    """Parts laid out in C order over a grid of ``counts`` (one count per trailing axis),
    concatenated into one array: the last axis first, then outwards."""
    ndim = len(counts)
    for axis in reversed(range(ndim)):
        step = counts[axis]
        parts = [concatenate(parts[i : i + step], axis - ndim) for i in range(0, len(parts), step)]
    return parts[0]


def _assemble(sources: list[Any], own: tuple[bool, ...], plans: Sequence[AxisPlan]) -> Array:
    """The block's compact input: its pieces of input, concatenated.

    A piece of the block's own (home) chunk is sliced from the chunk; a halo piece comes
    ready-cut from the neighbouring chunk's :func:`_cut_halos` result.
    """
    cuts = [_cut_bounds(pieces) for pieces in itertools.product(*(plan.reads for plan in plans))]
    parts = [
        source[_cut_index(cut)] if is_own else source[cut]
        for source, is_own, cut in zip(sources, own, cuts, strict=True)
    ]
    return _join(parts, [len(plan.reads) for plan in plans])


def _cut_halos(chunk: Array, cuts: tuple[Cut, ...]) -> dict[Cut, Array]:
    """Copies of the pieces of ``chunk`` that neighbouring blocks read, keyed by their bounds.

    Copies, not views, so the (large) chunk can be freed as soon as its own block has run: a
    worker then holds only thin halo strips for blocks still to come, whatever the image size.
    """
    return {cut: chunk[_cut_index(cut)].copy() for cut in cuts}


def _compute_block(
    layers: Sequence[Layer],
    plans: tuple[AxisPlan, ...],
    sources: list[Any],
    own: tuple[bool, ...],
) -> Array:
    """The fused stack on one output block, from its input ``sources`` (see :func:`_assemble`)."""
    return compute_compact(layers, plans, _assemble(sources, own, plans))


# --- the graph ---------------------------------------------------------------------------------


def _home_chunk(reads: list[Read]) -> Key:
    """The input chunk a block reads most of: it takes that chunk whole, the rest as halos."""
    volume: dict[Key, int] = {}
    for chunk, pieces in reads:
        volume[chunk] = volume.get(chunk, 0) + int(np.prod([p.stop - p.start for p in pieces]))
    return max(volume, key=volume.__getitem__)


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
        for chunk, pieces in block_reads:
            if chunk != homes[block]:
                cuts.setdefault(chunk, set()).add(_cut_bounds(pieces))
    halo_keys = {chunk: (f"{name}-halo", *chunk[1:]) for chunk in cuts}
    for chunk, chunk_cuts in cuts.items():
        layer[halo_keys[chunk]] = Task(
            halo_keys[chunk], _cut_halos, TaskRef(chunk), tuple(sorted(chunk_cuts))
        )
    ndim = len(plan.axis_plans)
    for block, block_reads in reads.items():
        split = len(block) - ndim
        key = (name, *block[:split], 0, *block[split:])
        own = tuple(chunk == homes[block] for chunk, _ in block_reads)
        sources = List(
            *(
                TaskRef(chunk if chunk == homes[block] else halo_keys[chunk])
                for chunk, _ in block_reads
            )
        )
        layer[key] = Task(
            key, _compute_block, TaskRef(layers_key), plan.block_plans(block), sources, own
        )
    return HighLevelGraph.from_collections(name, layer, dependencies=[plan.x])


def blockwise_stack(
    x: da.Array,
    layers: Sequence[Layer] | ResolvedStack,
    *,
    out_chunks: tuple[int, ...] | None = None,
) -> da.Array:
    """A layer stack applied lazily and chunk-exactly to a Dask array.

    Parameters
    ----------
    x : dask.array.Array of shape ``(..., C, H, W)`` (``(..., C, D, H, W)`` for 3-D layers)
        Any numeric dtype (converted to float32 inside the tasks); NumPy or CuPy chunks.
    layers : sequence of layers (:data:`featuremap.engine.layers.LAYER_TYPES`), or a ResolvedStack
        Applied in order, fused: one task per output block computes all of them. A stack
        already resolved against ``x`` is used as it is.
    out_chunks : tuple of int, optional
        Output block size along ``y, x`` (``z, y, x``); default: the input's first chunk size
        divided by the stack's jump (at least 1).

    Returns
    -------
    dask.array.Array of shape ``(..., J, *spatial_out)``, float32
        Batch axes chunked like ``x``, features in one chunk, regular spatial chunks.
    """
    ndim = layers.ndim if isinstance(layers, ResolvedStack) else stack_ndim(tuple(layers))
    x = _parse_input(x, ndim)
    if not isinstance(layers, ResolvedStack):
        layers = resolve_stack(tuple(layers), x.shape[-ndim:], x.shape[-ndim - 1])
    plan = _plan(x, layers, out_chunks)
    name = f"featuremap-stack-{plan.token}"
    graph = _graph(plan, name)
    meta = meta_from_array(plan.x._meta, ndim=len(plan.grid.shape), dtype=np.float32)
    return da.Array(graph, name, plan.grid.chunks, meta=meta)
