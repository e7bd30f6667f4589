"""Multiscale levels of the features (``output.pyramid``), written by the job that computes them.

Level ``l`` (``1..N``) is the ``2^l`` block mean (or max) of level 0 over the spatial axes, edges
trimmed like ``dask.array.coarsen(trim_excess=True)``: its shape is ``floor(n / 2^l)`` per
spatial axis. It is placed like an average pool of size and stride ``2^l`` after the stack
(ngff-zarr's convention: scale ``x 2^l``, translation shifted by ``(2^l - 1) / 2`` level-0
pixels).

Where the levels live (beside ``features``, never at the root)::

    features                 level 0
    levels/<l>/features      level l, same dimension names, chunked one feature per chunk
    levels/<l>/y, x, ...     its own coordinates, so ``xarray.open_zarr(store, group="levels/2")``
                             is a labelled, correctly placed map

``xarray.open_zarr(store)`` reads every root array and needs one size per dimension name: a
level at the root (``features`` is 8192 wide, level 1 4096) would break it, so the levels sit in
a subgroup, each with the coordinates of its own grid. The NGFF ``multiscales`` lists
``features`` then ``levels/<l>/features``.

How they are written (level 0 is never read back):

* **block levels** ``1..block_levels``: every block task pools its own block in memory, level
  from level, and writes each level's part of the block (blocks are multiples of
  ``2^block_levels`` pixels, so a block's part of level ``l`` is whole pixels and one object);
* **tail levels** ``block_levels + 1..N``: once every block is written, a small pass in the job's
  process pools the top block level tile by tile, a few tiles at once (:func:`write_tail_levels`). A level's part of
  a block shrinks by 4 (8 in 3-D) per level: block levels stop where it would fall under
  :data:`MIN_LEVEL_BLOCK` pixels a side, so tiny objects are not multiplied by the block count.

``levels: auto`` halves until the widest spatial side fits one :data:`TOP_TILE` tile (what a
viewer shows whole), and never so far that a side becomes empty.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

import numpy as np

from featuremap._validation import parse_choice, parse_int, suggestion
from featuremap.engine.cast import cast_to
from featuremap.engine.geometry import LayerGeometry, StackGeometry
from featuremap.errors import InputError, describe
from featuremap.io.output import array_at
from featuremap.io.placement import Placement

if TYPE_CHECKING:
    import zarr

    from featuremap.io.layout import OutputLayout

__all__ = [
    "LEVELS_GROUP",
    "MIN_LEVEL_BLOCK",
    "PYRAMID_METHODS",
    "TAIL_THREADS",
    "TOP_TILE",
    "Level",
    "Pyramid",
    "PyramidMethod",
    "PyramidOptions",
    "block_level_values",
    "block_levels",
    "level_path",
    "ome_datasets",
    "parse_pyramid",
    "plan_pyramid",
    "pool",
    "pyramid_alignment",
    "write_tail_levels",
]

#: How a level reduces ``2^l`` level-0 pixels per axis to one.
PyramidMethod = Literal["mean", "max"]
PYRAMID_METHODS: Final[tuple[PyramidMethod, ...]] = get_args(PyramidMethod)
#: ``levels: auto`` stops once the widest spatial side fits this many pixels (image, volume).
TOP_TILE: Final = {2: 256, 3: 64}
#: A block level's part of one block keeps at least this many pixels a side (image, volume).
MIN_LEVEL_BLOCK: Final = {2: 64, 3: 16}
#: Tiles of a tail level pooled at once (memory: this many tiles and their sources).
TAIL_THREADS: Final = 4
#: The subgroup holding the levels.
LEVELS_GROUP: Final = "levels"
_KEYS = ("levels", "method")


@dataclass(frozen=True)
class PyramidOptions:
    """``output.pyramid``: how many levels (``"auto"`` or a count >= 1) and the reduction."""

    levels: int | Literal["auto"] = "auto"
    method: PyramidMethod = "mean"

    def to_dict(self) -> dict[str, Any]:
        return {"levels": self.levels, "method": self.method}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PyramidOptions:
        """The options of a mapping with ``levels`` and ``method`` (both optional)."""
        unknown = sorted(str(key) for key in data if key not in _KEYS)
        if unknown:
            raise InputError(
                f"unknown key {unknown[0]!r}{suggestion(unknown[0], _KEYS)}; allowed keys: "
                f"{', '.join(_KEYS)}"
            )
        levels = data.get("levels", "auto")
        if levels != "auto":
            try:
                levels = parse_int("levels", levels, minimum=1)
            except InputError:
                raise InputError(
                    f"levels must be auto or an integer >= 1, got {describe(levels)}"
                ) from None
        method = parse_choice("method", data.get("method", "mean"), PYRAMID_METHODS)
        return cls(levels, method)


def parse_pyramid(value: Any) -> PyramidOptions | None:
    """``output.pyramid``: ``false`` / ``None`` (none), ``true`` / ``auto`` (the defaults), a
    level count, or a mapping ``{levels: auto|N, method: mean|max}``."""
    if value is None or value is False:
        return None
    if value is True or value == "auto":
        return PyramidOptions()
    if isinstance(value, Mapping):
        return PyramidOptions.from_dict(value)
    if isinstance(value, int):
        return PyramidOptions.from_dict({"levels": value})
    raise InputError(
        "pyramid must be false, auto, a level count or a mapping {levels: auto|N, method: "
        f"mean|max}}, got {describe(value)}"
    )


def level_path(level: int) -> str:
    """The array of level ``level`` (``features`` is level 0)."""
    return f"{LEVELS_GROUP}/{level}/features"


@dataclass(frozen=True)
class Level:
    """Level ``index`` of a pyramid: its array path and its own layout (shape, chunks, shards,
    geometry and placement of its pixels)."""

    index: int
    layout: OutputLayout

    @property
    def path(self) -> str:
        return level_path(self.index)

    @property
    def group(self) -> str:
        """The subgroup holding the level and its coordinates."""
        return self.path.rsplit("/", 1)[0]


@dataclass(frozen=True)
class Pyramid:
    """The planned levels ``1..N``; the first ``block_levels`` are written by the block tasks."""

    method: PyramidMethod
    levels: tuple[Level, ...]
    block_levels: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "levels": len(self.levels),
            "block_levels": self.block_levels,
            "paths": [level.path for level in self.levels],
        }


def _max_levels(sides: Sequence[int]) -> int:
    """The most halvings that leave every side at least one pixel."""
    return min(sides).bit_length() - 1


def _level_count(options: PyramidOptions, sides: Sequence[int]) -> int:
    """``N``: the requested count (checked), or ``auto``'s."""
    most = _max_levels(sides)
    if options.levels == "auto":
        top = TOP_TILE[len(sides)]
        wanted = max(0, math.ceil(math.log2(max(sides) / top))) if max(sides) > top else 0
        return min(wanted, most)
    if options.levels > most:
        raise InputError(
            f"output.pyramid.levels: {options.levels} levels would leave level {options.levels} "
            f"empty: the smallest spatial side of the output is {min(sides)} pixels, which "
            f"halves at most {most} times; give levels <= {most}, or auto"
        )
    return options.levels


def pyramid_alignment(ndim: int) -> int:
    """What automatic block sides are rounded up to, so blocks carry their levels down to
    :data:`MIN_LEVEL_BLOCK` (``MIN_BLOCK`` and ``MIN_BLOCK_3D`` are multiples of it)."""
    return MIN_LEVEL_BLOCK[ndim]


def block_levels(levels: int, block: Sequence[int], sides: Sequence[int]) -> int:
    """How many levels the block tasks write: blocks must be multiples of ``2^l`` pixels (on
    axes cut into several blocks) and, past level 1, keep :data:`MIN_LEVEL_BLOCK` pixels a side.

    Raises
    ------
    InputError
        A block side is odd (no level can be written from the blocks without reading level 0).
    """
    minimum = MIN_LEVEL_BLOCK[len(block)]
    count = 0
    for level in range(1, levels + 1):
        step = 1 << level
        aligned = all(b >= n or b % step == 0 for b, n in zip(block, sides, strict=True))
        large = level == 1 or all(
            min(b, n) // step >= minimum for b, n in zip(block, sides, strict=True)
        )
        if not (aligned and large):
            break
        count = level
    if levels and not count:
        raise InputError(
            f"output.pyramid needs blocks of an even number of pixels, but the output's blocks "
            f"are {list(block)}; give output.chunks as multiples of {1 << min(levels, 6)}"
        )
    return count


def _level_geometry(stack: StackGeometry, level: int) -> StackGeometry:
    """The stack followed by an average pool of size and stride ``2^level``."""
    size = (1 << level,) * stack.ndim
    return stack.then(LayerGeometry(size, size, (1,) * stack.ndim, ((0, 0),) * stack.ndim))


def _level_placement(placement: Placement, level: int) -> Placement:
    """Level-``level`` pixel ``i`` covers level-0 pixels ``[i, i + 1) * 2^level``: its centre
    is ``(2^level - 1) / 2`` level-0 pixels past the first one's."""
    step = 1 << level
    *z, y, x = (spacing.compose((step - 1) / 2, step) for spacing in placement.spatial)
    mapping = None if placement.grid_mapping is None else placement.grid_mapping.for_grid(y, x)
    return replace(placement, y=y, x=x, grid_mapping=mapping, z=z[0] if z else None)


def _level_layout(layout: OutputLayout, level: int, spatial_chunk: Sequence[int]) -> Level:
    """Level ``level`` of ``layout``: spatial sizes floored, chunks of ``spatial_chunk`` pixels
    (one shard of all features each where level 0 is sharded), placed by the pooled geometry."""
    ndim = layout.ndim
    sides = tuple(n >> level for n in layout.shape[-ndim:])
    spatial = tuple(min(c, n) for c, n in zip(spatial_chunk, sides, strict=True))
    lead = layout.chunks[: -ndim - 1]
    features = layout.shape[-ndim - 1]
    per_chunk = layout.chunks[-ndim - 1]
    z_band = () if ndim == 2 else (min(layout.chunks[-3], spatial[0]),)
    chunks = (*lead, per_chunk, *z_band, *spatial[ndim - 2 :])
    shards = None if layout.shards is None else (*lead, features, *spatial)
    return Level(
        level,
        replace(
            layout,
            shape=(*layout.shape[:-ndim], *sides),
            chunks=chunks,
            shards=shards,
            stack=_level_geometry(layout.stack, level),
            placement=_level_placement(layout.placement, level),
            pyramid=None,
        ),
    )


def plan_pyramid(options: PyramidOptions, layout: OutputLayout) -> Pyramid | None:
    """The levels of ``layout``'s features, or ``None`` when there are none to make.

    Block levels are chunked by their part of a block; tail levels by :data:`TOP_TILE` tiles.
    """
    ndim = layout.ndim
    sides = layout.shape[-ndim:]
    count = _level_count(options, sides)
    if count == 0:
        return None
    block = layout.block_out
    written = block_levels(count, block, sides)
    levels = [
        _level_layout(layout, level, [b >> level for b in block]) for level in range(1, written + 1)
    ]
    tile = (TOP_TILE[ndim],) * ndim
    levels += [_level_layout(layout, level, tile) for level in range(written + 1, count + 1)]
    return Pyramid(options.method, tuple(levels), written)


# -- pooling -------------------------------------------------------------------------------------


def pool(values: np.ndarray, ndim: int, method: PyramidMethod) -> np.ndarray:
    """The 2-per-axis block mean (or max) over the last ``ndim`` axes, odd edges trimmed.

    Pairs are combined one axis at a time, outermost first: the first step adds whole rows
    (contiguous), and every later one works on an array half as large -- ~2.5x faster than
    adding the ``2^ndim`` strided views of the block. Means add in float32 (a float16 level
    too) and divide once.
    """
    reduced = values
    for axis in range(values.ndim - ndim, values.ndim):
        even = (slice(None),) * axis + (slice(0, reduced.shape[axis] // 2 * 2, 2),)
        odd = (slice(None),) * axis + (slice(1, reduced.shape[axis] // 2 * 2, 2),)
        if method == "max":
            reduced = np.maximum(reduced[even], reduced[odd])
        else:
            reduced = np.add(reduced[even], reduced[odd], dtype=np.float32)
    if method == "mean":
        reduced *= np.float32(1 / (1 << ndim))
    return reduced


def block_level_values(
    pyramid: Pyramid, ndim: int, block: np.ndarray, slices: tuple[slice, ...]
) -> Iterator[tuple[Level, tuple[slice, ...], np.ndarray]]:
    """Each block level's part of a block (compute order, as written to level 0): ``(level,
    where it goes in the level (compute order), values)``; empty parts (the last block of an
    axis narrower than ``2^l``) are skipped."""
    values = block.astype(np.float32, copy=False)
    for level in pyramid.levels[: pyramid.block_levels]:
        values = pool(values, ndim, pyramid.method)
        spatial = tuple(
            slice(s.start >> level.index, s.stop >> level.index) for s in slices[-ndim:]
        )
        if all(s.stop > s.start for s in spatial):
            yield level, (*slices[:-ndim], *spatial), values


# -- the tail pass -------------------------------------------------------------------------------


def _regions(array: zarr.Array[Any]) -> Iterator[tuple[slice, ...]]:
    """The array's shards (or chunks) as regions, in C order."""
    block = array.shards or array.chunks
    grid = (range(0, n, b) for n, b in zip(array.shape, block, strict=True))
    for origin in itertools.product(*grid):
        yield tuple(
            slice(o, min(o + b, n)) for o, b, n in zip(origin, block, array.shape, strict=True)
        )


def write_tail_levels(
    group: zarr.Group, pyramid: Pyramid, ndim: int, check: Callable[[], None]
) -> int:
    """Pool each tail level from the one below it, one shard of the new level at a time (it
    reads 2^ndim times that from the level below), :data:`TAIL_THREADS` at once (decoding,
    pooling and encoding release the GIL); returns the levels written. ``check`` (the job's
    fencing check) runs before each level."""
    for level in pyramid.levels[pyramid.block_levels :]:
        check()
        below = array_at(group, level_path(level.index - 1))
        target = array_at(group, level.path).with_config({"write_empty_chunks": True})

        def write(region: tuple[slice, ...], below: Any = below, target: Any = target) -> None:
            source = (*region[:-ndim], *(slice(2 * s.start, 2 * s.stop) for s in region[-ndim:]))
            pooled = pool(np.asarray(below[source]), ndim, pyramid.method)
            target[region] = cast_to(pooled, target.dtype)

        with ThreadPoolExecutor(TAIL_THREADS) as threads:
            for _ in threads.map(write, _regions(target)):  # re-raises a region's error
                pass
    return len(pyramid.levels) - pyramid.block_levels


# -- NGFF ----------------------------------------------------------------------------------------


def ome_datasets(
    ome: dict[str, Any], method: PyramidMethod, levels: Sequence[tuple[str, Sequence[Any]]]
) -> dict[str, Any]:
    """``ome`` (NGFF 0.5 attributes of level 0) with one dataset per level after it: ``(path,
    axes)`` with each axis's ``scale`` and ``translation``; the multiscale's ``type`` names the
    reduction."""
    [multiscale, *others] = ome["multiscales"]
    datasets = [
        *multiscale["datasets"],
        *(
            {
                "path": path,
                "coordinateTransformations": [
                    {"type": "scale", "scale": [axis.scale for axis in axes]},
                    {"type": "translation", "translation": [axis.translation for axis in axes]},
                ],
            }
            for path, axes in levels
        ),
    ]
    multiscale = {
        **multiscale,
        "datasets": datasets,
        "type": method,
        "metadata": {
            "description": "2^l block " + method + " of level 0 per spatial axis, edges trimmed",
            "method": "featuremap.io.pyramid.pool",
        },
    }
    return {**ome, "multiscales": [multiscale, *others]}
