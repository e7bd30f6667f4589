"""The sample ``output.codec: auto`` decides on: a small window of a job's first blocks, computed
in the planning process before the store is created (a Zarr array's codecs are fixed when it is
made; :mod:`featuremap.io.codec_choice` decides from the sample).

Two windows are computed, each at most :data:`SAMPLE_PIXELS` output pixels of every feature and
the first batch element: in the middle of the first block and in the middle of the grid's middle
block (an image's corner is often background, which compresses where the rest may not). On the
4096^2 16-feature 7x7 benchmark job this is ~1/128 of the job's pixels, computed in
milliseconds; reading the windows' input goes through the chunk cache as a block task's does.
A small job samples at most :data:`SAMPLE_FRACTION` of its output pixels (a 256^2 window would be
the whole of a 1024^2 job's stride-4 output, computed twice).
"""

from __future__ import annotations

import math

import numpy as np

from featuremap.engine.blockplan import plan_axis
from featuremap.engine.device import to_host
from featuremap.engine.fused import axis_steps, compute_compact
from featuremap.engine.stack import ResolvedStack
from featuremap.io import InputArray, OutputLayout

__all__ = ["SAMPLE_FRACTION", "SAMPLE_PIXELS", "sample_windows"]

#: Output pixels (voxels) of one sample window, per feature: 256^2 (about 40^3).
SAMPLE_PIXELS = 2**16
#: A window's float32 features are at most this many bytes (many features: a smaller window).
SAMPLE_BYTES = 16 * 2**20
#: A window is at most this fraction of the job's output pixels (per feature).
SAMPLE_FRACTION = 1 / 16


def _window(block: tuple[slice, ...], ndim: int, budget: int) -> tuple[slice, ...]:
    """The sample window in the middle of ``block`` (compute-order slices): the first batch
    element, every feature, at most :data:`SAMPLE_BYTES` and ``budget`` pixels (at least 8 on
    a side)."""
    batch, feature, spatial = block[: -ndim - 1], block[-ndim - 1], block[-ndim:]
    features = max(feature.stop - feature.start, 1)
    pixels = min(budget, SAMPLE_BYTES // (4 * features))
    side = max(8, int(pixels ** (1 / ndim)))
    centred = []
    for axis in spatial:
        length = min(side, axis.stop - axis.start)
        start = axis.start + (axis.stop - axis.start - length) // 2
        centred.append(slice(start, start + length))
    return (*(slice(s.start, s.start + 1) for s in batch), feature, *centred)


def _compute(source: InputArray, stack: ResolvedStack, window: tuple[slice, ...]) -> np.ndarray:
    """The features of ``window`` (compute order), as a block task computes them."""
    ndim = stack.ndim
    batch, spatial = window[: -ndim - 1], window[-ndim:]
    plans = tuple(
        plan_axis(steps, out.start, out.stop, [size])
        for steps, out, size in zip(axis_steps(stack), spatial, source.spatial_shape, strict=True)
    )
    values = source.read(batch, [[(p.start, p.stop) for p in plan.reads] for plan in plans])
    return to_host(compute_compact(stack.layers, plans, values))


def sample_windows(
    source: InputArray, stack: ResolvedStack, layout: OutputLayout
) -> list[np.ndarray]:
    """The features of the sample windows (compute order ``(*batch, feature, *spatial)``,
    float32): in the first block and in the grid's middle one (once when they are the same)."""
    grid = layout.grid_shape
    blocks = [tuple(0 for _ in grid), tuple(n // 2 for n in grid)]
    if blocks[0] == blocks[1] or math.prod(grid) == 0:
        blocks = blocks[:1]
    budget = min(SAMPLE_PIXELS, int(math.prod(layout.shape[-stack.ndim :]) * SAMPLE_FRACTION))
    return [
        _compute(source, stack, _window(layout.block_slices(b), stack.ndim, budget)) for b in blocks
    ]
