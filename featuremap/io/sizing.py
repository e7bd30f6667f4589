"""How big a job's pieces are: output blocks, shards, and the limits checked before anything.

* **Blocks** (one task, one done-marker): at least :data:`MIN_BLOCK` output pixels per spatial
  axis (a distributed task costs ~2.5 ms, PERFORMANCE.md) and at most :data:`MAX_BLOCK_BYTES` of
  features, aligned so a block's input window covers whole stored chunks.
* **Shards** (``output.shards``): ``auto`` groups chunks into shards of about
  :data:`SHARD_TARGET_BYTES` -- 2 x 2 chunks of 16 float32 features at 1024^2 -- once a job has
  :data:`SHARD_FROM_CHUNKS` or more chunks, where object counts start to cost (object stores, ``ls``,
  ``rm``); smaller jobs keep one object per chunk, and their parallelism. A shard is then the
  block: written whole, by exactly one task, so concurrent writers and retries are safe.
* **Limits**: an output over :data:`MAX_OUTPUT_BYTES` or over :data:`MAX_BLOCKS` blocks is refused
  unless ``allow_large`` (``--allow-large``), which still stops at :data:`HARD_MAX_BLOCKS`. All of
  it is Python integer arithmetic on the parsed geometry, done before a store is created.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from featuremap._vocabulary import OutputCodec, OutputDtype
from featuremap.engine.geometry import Pair, ceil_div
from featuremap.engine.stack import ResolvedStack
from featuremap.errors import InputError, option
from featuremap.io.input import InputArray
from featuremap.io.layout import OutputLayout
from featuremap.io.placement import output_placement

__all__ = [
    "HARD_MAX_BLOCKS",
    "MAX_BLOCKS",
    "MAX_BLOCK_BYTES",
    "MAX_OUTPUT_BYTES",
    "MIN_BLOCK",
    "SHARD_FROM_CHUNKS",
    "SHARD_TARGET_BYTES",
    "OutputOptions",
    "block_chunks",
    "check_limits",
    "plan_layout",
    "shard_factor",
]

MIN_BLOCK = 256
MAX_BLOCK_BYTES = 256 * 2**20
SHARD_TARGET_BYTES = 256 * 2**20
SHARD_FROM_CHUNKS = 4096
#: Refused without ``allow_large``: 1 TiB of features, or ten million blocks.
MAX_OUTPUT_BYTES = 2**40
MAX_BLOCKS = 10**7
#: Refused even with it: what one scheduler's job can follow (split larger jobs by region).
HARD_MAX_BLOCKS = 10**9

_ITEMSIZE = {"float32": 4, "float16": 2}


@dataclass(frozen=True)
class OutputOptions:
    """How the features are stored (``output.*``): spatial chunk size, dtype, codec, shards.

    ``shards`` is ``"auto"``, ``None`` (one object per chunk) or the ``(y, x)`` shard shape in
    output pixels (whole chunks).
    """

    chunks: Pair | None = None
    dtype: OutputDtype = "float32"
    codec: OutputCodec = "lz4"
    codec_level: int | None = None
    shards: Pair | str | None = "auto"
    allow_large: bool = False

    @property
    def itemsize(self) -> int:
        return _ITEMSIZE[self.dtype]


def block_chunks(
    storage: Pair, jump: Pair, out_hw: Pair, features: int, requested: Pair | None
) -> Pair:
    """The ``(y, x)`` output chunk: ``requested``, or about one input read's worth (whole stored
    chunks, divided by the jump), at least :data:`MIN_BLOCK` and at most
    :data:`MAX_BLOCK_BYTES` of features."""
    if requested is not None:
        return (min(requested[0], out_hw[0]), min(requested[1], out_hw[1]))
    sizes = []
    for axis in range(2):
        read = storage[axis] * ceil_div(MIN_BLOCK * jump[axis], storage[axis])
        sizes.append(min(max(ceil_div(read, jump[axis]), MIN_BLOCK), out_hw[axis]))
    while features * sizes[0] * sizes[1] * 4 > MAX_BLOCK_BYTES and max(sizes) > MIN_BLOCK:
        widest = int(sizes[1] > sizes[0])
        sizes[widest] = max(sizes[widest] // 2, MIN_BLOCK)
    return (sizes[0], sizes[1])


def shard_factor(
    options: OutputOptions, chunk: Pair, features: int, grid: Sequence[int]
) -> Pair | None:
    """Chunks per shard along ``(y, x)``, or ``None`` for no sharding."""
    if options.shards is None:
        return None
    if options.shards == "auto":
        chunk_bytes = features * chunk[0] * chunk[1] * options.itemsize
        factor = math.isqrt(max(SHARD_TARGET_BYTES // max(chunk_bytes, 1), 1))
        if factor < 2 or math.prod(grid) < SHARD_FROM_CHUNKS:
            return None
        return (factor, factor)
    assert not isinstance(options.shards, str)
    shard_y, shard_x = options.shards
    if shard_y % chunk[0] or shard_x % chunk[1]:
        raise InputError(
            f"output.shards {[shard_y, shard_x]} must be whole multiples of the output chunks "
            f"{list(chunk)}; give multiples, or shards: auto"
        )
    return (shard_y // chunk[0], shard_x // chunk[1])


def check_limits(shape: Sequence[int], blocks: int, options: OutputOptions) -> None:
    """Refuse an output too large to be meant (unless ``allow_large``) or to be followed."""
    elements = math.prod(int(n) for n in shape)
    size = elements * options.itemsize
    if blocks > HARD_MAX_BLOCKS:
        raise InputError(
            f"the output would have {blocks:,} blocks (shape {list(shape)}), more than one job can "
            f"follow ({HARD_MAX_BLOCKS:,}); split it into jobs over regions (input.region)"
        )
    if options.allow_large:
        return
    if size > MAX_OUTPUT_BYTES or blocks > MAX_BLOCKS:
        raise InputError(
            f"the output would be {_human(size)} in {blocks:,} blocks (shape {list(shape)}), over "
            f"the limits of {_human(MAX_OUTPUT_BYTES)} and {MAX_BLOCKS:,} blocks; check the "
            f"padding, strides and region, or pass {option('allow_large')} if you mean it"
        )


def _human(size: int) -> str:
    """``1.5 TiB``-style size."""
    exponent = min(max(size.bit_length() - 1, 0) // 10, 6)
    unit = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")[exponent]
    return f"{size} B" if exponent == 0 else f"{size / 1024**exponent:.1f} {unit}"


def plan_layout(
    source: InputArray,
    stack: ResolvedStack,
    options: OutputOptions,
    existing_chunks: Pair | None,
) -> OutputLayout:
    """The output's layout for ``stack`` on ``source``: chunks (or the existing store's blocks), shards, dtype, codec."""
    features, out_h, out_w = stack.output_shape
    if existing_chunks is not None:
        chunk, factor = existing_chunks, None
    else:
        chunk = block_chunks(
            source.spatial_chunks, stack.geometry.jump, (out_h, out_w), features, options.chunks
        )
        grid = [
            *(ceil_div(n, c) for n, c in zip(source.batch_shape, source.batch_chunks, strict=True)),
            ceil_div(out_h, chunk[0]),
            ceil_div(out_w, chunk[1]),
        ]
        factor = shard_factor(options, chunk, features, grid)
    chunks = (*source.batch_chunks, features, *chunk)
    shards = (
        None
        if factor is None
        else (*source.batch_chunks, features, chunk[0] * factor[0], chunk[1] * factor[1])
    )
    return OutputLayout(
        batch_dims=source.batch_dims,
        shape=(*source.batch_shape, features, out_h, out_w),
        chunks=chunks,
        stack=stack.geometry,
        batch_kinds=source.batch_kinds,
        placement=output_placement(stack.geometry, source.placement),
        feature_labels=stack.feature_labels(source.channel_labels),
        dtype=options.dtype,
        codec=options.codec,
        codec_level=options.codec_level,
        shards=shards,
    )
