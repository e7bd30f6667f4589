"""How big a job's pieces are: output blocks, shards, and the limits checked before anything.

* **Blocks** (one task, one done-marker): at least :data:`MIN_BLOCK` output pixels per spatial
  axis (a distributed task costs ~2.5 ms, PERFORMANCE.md) and at most :data:`MAX_BLOCK_BYTES` of
  features, aligned so a block's input window covers whole stored chunks.
* **Shards** (``output.shards``): ``auto`` groups chunks into shards of about
  :data:`SHARD_TARGET_BYTES` -- 2 x 2 chunks of 16 float32 features at 1024^2 -- once a job has
  :data:`SHARD_FROM_CHUNKS` or more chunks, where object counts start to cost (object stores, ``ls``,
  ``rm``); smaller jobs keep one object per chunk, and their parallelism. A shard is then the
  block: written whole, by exactly one task, so concurrent writers and retries are safe.
* **Chunks a viewer reads** (the default): one feature per chunk, and in a volume one band of
  z-planes (:data:`Z_BAND_PIXELS` voxels at least), so showing one feature plane decodes that
  plane, not every feature of the block (blocks under :data:`VIEWER_MIN_PIXELS` a feature keep
  every feature in one chunk: tiny chunks cost more to write and read than they save). The block is then one shard of those chunks: the object
  count is the block count, as with one chunk per block. ``output.chunks`` leading with a
  feature count keeps that many per chunk; ``shards: false`` keeps one chunk per block.
* **Pyramids** (``output.pyramid``, :mod:`featuremap.io.pyramid`): automatic blocks are rounded
  up to multiples of :func:`~featuremap.io.pyramid.pyramid_alignment`, so each block carries its
  own multiscale levels.
* **Limits**: an output over :data:`MAX_OUTPUT_BYTES` or over :data:`MAX_BLOCKS` blocks is refused
  unless ``allow_large`` (``--allow-large``), which still stops at :data:`HARD_MAX_BLOCKS`. All of
  it is Python integer arithmetic on the parsed geometry, done before a store is created.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from featuremap._vocabulary import OutputChecksum, OutputCodec, OutputDtype, OutputFormat
from featuremap.engine.geometry import Sizes, ceil_div
from featuremap.engine.stack import ResolvedStack
from featuremap.errors import InputError, option
from featuremap.io.formats import StoreFormat
from featuremap.io.input import InputArray
from featuremap.io.layout import OutputLayout, output_batch_names
from featuremap.io.placement import output_placement
from featuremap.io.pyramid import PyramidOptions, plan_pyramid, pyramid_alignment

__all__ = [
    "HARD_MAX_BLOCKS",
    "MAX_BLOCKS",
    "MAX_BLOCK_BYTES",
    "MAX_INPUT_CHUNK_BYTES",
    "MAX_OUTPUT_BYTES",
    "MIN_BLOCK",
    "SHARD_FROM_CHUNKS",
    "SHARD_TARGET_BYTES",
    "VIEWER_MIN_PIXELS",
    "Z_BAND_PIXELS",
    "OutputOptions",
    "block_chunks",
    "check_input_chunk",
    "check_limits",
    "plan_layout",
    "shard_factor",
    "viewer_chunk",
]

#: The smallest block side (output pixels) a job plans unless the output is smaller: per axis of
#: an image, and per axis of a volume (64^3 voxels hold as many as 512^2 pixels: a halo of a few
#: pixels stays a small part of the block in both).
MIN_BLOCK = 256
MIN_BLOCK_3D = 64
MAX_BLOCK_BYTES = 256 * 2**20
SHARD_TARGET_BYTES = 256 * 2**20
#: The most one stored input chunk may decode to: a block decodes every input chunk it reads
#: whole, so a chunk holds at most a few blocks' worth (a 128 KB chunk of zeros can declare a
#: shape that decodes to gigabytes).
MAX_INPUT_CHUNK_BYTES = 4 * MAX_BLOCK_BYTES
SHARD_FROM_CHUNKS = 4096
#: A volume's chunk holds z-planes until it has at least this many voxels (64 x 64 planes: 8).
#: (The fewest such planes that divide the block's depth.)
Z_BAND_PIXELS = 2**15
#: Blocks smaller than this (pixels or voxels of one feature) keep every feature in one chunk:
#: such a block reads whole in about a millisecond, while Zarr's sharding codec spends ~0.5 ms
#: on every inner chunk it writes or reads (a store of 32x32 blocks took 8x longer to verify
#: with one chunk per feature: 39 s against 4.9 s in tests/jobs/test_failures.py).
VIEWER_MIN_PIXELS = 2**16
#: Refused without ``allow_large``: 1 TiB of features, or ten million blocks.
MAX_OUTPUT_BYTES = 2**40
MAX_BLOCKS = 10**7
#: Refused even with it: what one scheduler's job can follow (split larger jobs by region).
HARD_MAX_BLOCKS = 10**9

_ITEMSIZE = {"float32": 4, "float16": 2}


@dataclass(frozen=True)
class OutputOptions:
    """How the features are stored (``output.*``): spatial chunk size, dtype, codec, shards,
    format and checksum.

    ``chunks`` and ``shards`` have one size per spatial axis (``(y, x)``, ``(z, y, x)`` for a
    3-D stack). ``shards`` is ``"auto"``, ``None`` (one object per chunk) or the shard shape in
    output pixels (whole chunks). ``feature_chunks``: features per stored chunk; ``None`` is the
    viewer's layout (one per chunk, unless there are no shards -- ``shards`` ``None``, or Zarr
    v2 -- then all in one); fewer than all make every block one shard of feature chunks.
    ``pyramid``: the multiscale levels (``None``: level 0 only). ``format`` and ``checksum`` are
    the store's encoding (:class:`~featuremap.io.formats.StoreFormat`; ``checksum=None``: the
    format's default); ``ngff-0.4`` (Zarr v2) has no sharding, so ``shards="auto"`` means none
    there and a shard shape or ``feature_chunks`` is refused.

    Raises
    ------
    InputError
        A format and a checksum or sharding that do not go together.
    """

    chunks: Sizes | None = None
    dtype: OutputDtype = "float32"
    codec: OutputCodec = "auto"
    codec_level: int | None = None
    shards: Sizes | str | None = "auto"
    allow_large: bool = False
    feature_chunks: int | None = None
    pyramid: PyramidOptions | None = None
    format: OutputFormat = "ngff-0.5"
    checksum: OutputChecksum | None = None

    def __post_init__(self) -> None:
        if self.store_format.zarr_format == 3:
            return
        if self.shards not in ("auto", None):
            raise InputError(
                f"output.shards: format {self.format} (Zarr v2) has no sharding; remove shards "
                "or use format ngff-0.5"
            )
        if self.feature_chunks is not None:
            raise InputError(
                f"output.chunks: chunks that name the feature axis need sharding, which format "
                f"{self.format} (Zarr v2) has not; give spatial chunks or use format ngff-0.5"
            )

    @property
    def store_format(self) -> StoreFormat:
        """The store's encoding (the checksum defaulted by the format)."""
        return StoreFormat.of(self.format, self.checksum)

    @property
    def itemsize(self) -> int:
        return _ITEMSIZE[self.dtype]


def _check_rank(name: str, sizes: Sizes, ndim: int) -> None:
    if len(sizes) != ndim:
        names = ", ".join("zyx"[-ndim:])
        raise InputError(
            f"output.{name} {list(sizes)} has {len(sizes)} sizes but the stack's output has "
            f"{ndim} spatial axes ({names}); give one size per axis"
        )


def block_chunks(
    storage: Sizes,
    jump: Sizes,
    out_size: Sizes,
    features: int,
    requested: Sizes | None,
    align: int = 1,
) -> Sizes:
    """The spatial output chunk: ``requested``, or about one input read's worth (whole stored
    chunks, divided by the jump), at least :data:`MIN_BLOCK` (:data:`MIN_BLOCK_3D` for a
    volume) per axis and at most :data:`MAX_BLOCK_BYTES` of features, rounded up to a multiple
    of ``align`` (where the axis is longer)."""
    ndim = len(out_size)
    if requested is not None:
        _check_rank("chunks", requested, ndim)
        return tuple(min(r, n) for r, n in zip(requested, out_size, strict=True))
    smallest = MIN_BLOCK if ndim == 2 else MIN_BLOCK_3D
    sizes = []
    for stored, step, length in zip(storage, jump, out_size, strict=True):
        read = stored * ceil_div(smallest * step, stored)
        sizes.append(min(max(ceil_div(read, step), smallest), length))
    while features * math.prod(sizes) * 4 > MAX_BLOCK_BYTES and max(sizes) > smallest:
        widest = max(reversed(range(ndim)), key=sizes.__getitem__)  # the last of the widest
        sizes[widest] = max(sizes[widest] // 2, smallest)
    return tuple(
        min(ceil_div(size, align) * align, n) for size, n in zip(sizes, out_size, strict=True)
    )


def _integer_root(n: int, k: int) -> int:
    """The largest ``f`` with ``f ** k <= n``."""
    f = math.isqrt(n) if k == 2 else round(n ** (1 / k))
    while f**k > n:
        f -= 1
    while (f + 1) ** k <= n:
        f += 1
    return f


def shard_factor(
    options: OutputOptions, chunk: Sizes, features: int, grid: Sequence[int]
) -> Sizes | None:
    """Chunks per shard along each spatial axis, or ``None`` for no sharding (always in Zarr v2,
    which has none). ``auto`` shards are never larger than the array's grid of chunks
    (``grid``: chunks along the batch axes, then the spatial ones)."""
    if options.shards is None or options.store_format.zarr_format == 2:
        return None
    ndim = len(chunk)
    if options.shards == "auto":
        chunk_bytes = features * math.prod(chunk) * options.itemsize
        factor = _integer_root(max(SHARD_TARGET_BYTES // max(chunk_bytes, 1), 1), ndim)
        if factor < 2 or math.prod(grid) < SHARD_FROM_CHUNKS:
            return None
        # never past the array: Zarr writes a shard whole, fill-value chunks included (blocks
        # are written with write_empty_chunks), so a 16 MB shard around an 8 x 8 image is 16 MB
        # on disk. Many small images are many chunks along the batch axes, which shards (spatial
        # only) cannot group: they keep one object per chunk.
        clipped = tuple(min(factor, int(n)) for n in grid[-ndim:])
        return None if max(clipped) < 2 else clipped
    assert not isinstance(options.shards, str)
    _check_rank("shards", options.shards, ndim)
    if any(shard % size for shard, size in zip(options.shards, chunk, strict=True)):
        raise InputError(
            f"output.shards {list(options.shards)} must be whole multiples of the output chunks "
            f"{list(chunk)}; give multiples, or shards: auto"
        )
    return tuple(shard // size for shard, size in zip(options.shards, chunk, strict=True))


def check_input_chunk(source: InputArray) -> None:
    """Refuse an input whose one stored chunk decodes to more than
    :data:`MAX_INPUT_CHUNK_BYTES`: every block that reads it would decode all of it (its stored
    size says nothing: zeros compress to almost nothing)."""
    decoded = math.prod(int(n) for n in source.chunks) * source.dtype.itemsize
    if decoded > MAX_INPUT_CHUNK_BYTES:
        raise InputError(
            f"input {source.path!r} has chunks of shape {list(source.chunks)} "
            f"({source.dtype}), {_human(decoded)} each when decoded, more than the "
            f"{_human(MAX_INPUT_CHUNK_BYTES)} a block may decode; rechunk the input (smaller "
            "chunks, e.g. 1024 pixels a side)"
        )


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


def viewer_chunk(options: OutputOptions, block: Sizes, features: int) -> tuple[int, Sizes]:
    """``(features per chunk, spatial chunk)`` inside a block: the viewer's layout by default
    (one feature, a band of z-planes in a volume), the block's own with ``shards: false`` and
    for blocks of fewer than :data:`VIEWER_MIN_PIXELS` pixels a feature."""
    if options.feature_chunks is not None:
        return min(options.feature_chunks, features), block
    if options.shards is None or options.store_format.zarr_format == 2:
        return features, block  # no shards to hold smaller chunks
    if math.prod(block) < VIEWER_MIN_PIXELS:
        return (
            features,
            block,
        )  # read whole in a blink; a chunk per feature costs more than it saves
    if len(block) == 3 and options.chunks is None:
        # the fewest planes that make a chunk of Z_BAND_PIXELS and divide the block (shards hold
        # whole chunks)
        wanted = min(block[0], ceil_div(Z_BAND_PIXELS, block[1] * block[2]))
        band = next(d for d in range(wanted, block[0] + 1) if block[0] % d == 0)
        return 1, (band, *block[1:])
    return 1, block


def plan_layout(
    source: InputArray,
    stack: ResolvedStack,
    options: OutputOptions,
    existing_chunks: Sizes | None,
) -> OutputLayout:
    """The output's layout for ``stack`` on ``source``: chunks (or the existing store's blocks),
    shards, dtype, codec, and the pyramid's levels."""
    check_input_chunk(source)
    features, *out_size = stack.output_shape
    ndim = len(out_size)
    if existing_chunks is not None:
        chunk, factor = tuple(existing_chunks), None
    else:
        align = 1 if options.pyramid is None else pyramid_alignment(ndim)
        chunk = block_chunks(
            source.spatial_chunks,
            stack.geometry.jump,
            tuple(out_size),
            features,
            options.chunks,
            align,
        )
        grid = [
            *(ceil_div(n, c) for n, c in zip(source.batch_shape, source.batch_chunks, strict=True)),
            *(ceil_div(n, c) for n, c in zip(out_size, chunk, strict=True)),
        ]
        factor = shard_factor(options, chunk, features, grid)
    block = tuple(size * f for size, f in zip(chunk, factor or (1,) * ndim, strict=True))
    per_chunk, spatial = viewer_chunk(options, chunk, features)
    chunks = (*source.batch_chunks, per_chunk, *spatial)
    inner = (per_chunk, *spatial) != (features, *block)
    shards = (
        (*source.batch_chunks, ceil_div(features, per_chunk) * per_chunk, *block)
        if factor is not None or inner
        else None
    )
    names = output_batch_names(source.batch_dims, source.batch_kinds, stack.ndim)
    placement = output_placement(stack.geometry, source.placement)
    # the placement knows the batch axes by the input's own names
    inputs = (source.axes.axes[i].name for i in source.axes.batch)
    renamed = dict(zip(inputs, names, strict=True))
    layout = OutputLayout(
        batch_dims=names,
        shape=(*source.batch_shape, features, *out_size),
        chunks=chunks,
        stack=stack.geometry,
        batch_kinds=source.batch_kinds,
        placement=replace(
            placement, batch={renamed[name]: value for name, value in placement.batch.items()}
        ),
        feature_labels=stack.feature_labels(source.channel_labels),
        dtype=options.dtype,
        codec=options.codec,
        codec_level=options.codec_level,
        shards=shards,
        store_format=options.store_format,
    )
    if options.pyramid is None:
        return layout
    return replace(layout, pyramid=plan_pyramid(options.pyramid, layout))
