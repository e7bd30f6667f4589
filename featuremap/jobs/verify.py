"""Integrity check of a whole output store, and ``--repair`` of what can be recomputed.

:func:`verify_store` reads everything a store holds and names what is damaged:

* every **metadata document** (each ``zarr.json``; ``.zarray``, ``.zattrs``, ``.zgroup`` in a
  Zarr v2 store) must parse;
* every **array** -- coordinates, weights, biases, the CRS, the done-markers -- is read chunk by
  chunk (each chunk carries a crc32c checksum, so a flipped byte is an error on read; in a store
  written with ``output.checksum: none`` only what the compressor notices is: a truncated or
  garbled compressed chunk, not a flipped byte in the data);
* every **block** of ``features`` is checked against its done-marker, inner chunk by inner chunk
  when the store is sharded:

  ``missing``
      marked done, but its chunk (or shard) is not on disk;
  ``corrupted``
      on disk, but a chunk of it cannot be decoded (checksum mismatch, truncated file);
  ``bad_marker``
      the marker chunk holding its bit cannot be read;
  ``unmarked``
      on disk without its marker: a block whose job stopped before the marker was flushed, or
      not reached yet. Not damage: ``--resume`` recomputes it.

* every **pyramid level** (``output.pyramid``): a block's part of each level its task writes is
  checked with the block (missing or undecodable: the block is damaged,
  :func:`_block_level_damage`); the tail levels, pooled once every block is written, must be
  whole in a complete store (:func:`_tail_damage`).

Verification only reads. ``repair=True`` (``featuremap verify --repair``) then restores what can
be recomputed: damaged blocks are deleted and unmarked, with their parts of the levels
(``run --resume`` recomputes them), damaged tail levels are deleted (``--resume`` pools them again),
unreadable marker chunks are rebuilt from the blocks that are on disk and decode, and damaged
``y`` / ``x`` coordinates are rewritten from the recorded geometry. Damaged metadata documents
and weights cannot be recomputed from the store: the report says to replace it (``--overwrite``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from featuremap.errors import spoken
from featuremap.io import Block, OutputStore, local_path, open_output
from featuremap.io.chunks import (
    Chunk,
    delete_chunks,
    metadata_documents,
    region_errors,
    stored_chunks,
    unreadable_chunks,
)
from featuremap.io.markers import BLOCKS_PER_CHUNK, block_number, marker_chunk_count
from featuremap.io.output import array_at, attrs_dict, feature_chunk
from featuremap.io.permissions import check_writable
from featuremap.jobs import state

__all__ = ["VerifyReport", "verify_store"]

#: Arrays whose damage ``--repair`` can undo by recomputing them from the recorded geometry: the
#: spatial coordinates (``z`` only where a 3-D stack made it spatial; :func:`_recomputable`).
RECOMPUTABLE = ("z", "y", "x")


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_store` found; block indices are ``(*batch_blocks, block_y, block_x)``.

    ``arrays`` names the damaged chunks of the other arrays (``{"y": ["c/0: ..."]}``),
    ``documents`` the unreadable metadata documents, ``errors`` the first error of each damaged
    block.
    """

    store: str
    status: str
    blocks_total: int
    blocks_done: int
    chunks_read: int
    missing: tuple[Block, ...] = ()
    corrupted: tuple[Block, ...] = ()
    bad_marker: tuple[Block, ...] = ()
    unmarked: tuple[Block, ...] = ()
    arrays: dict[str, list[str]] = field(default_factory=dict)
    documents: dict[str, str] = field(default_factory=dict)
    repaired: bool = False
    unrepairable: tuple[str, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def damaged(self) -> tuple[Block, ...]:
        """Every damaged block, sorted."""
        return tuple(sorted({*self.missing, *self.corrupted, *self.bad_marker}))

    @property
    def clean(self) -> bool:
        return not (self.damaged or self.arrays or self.documents)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("missing", "corrupted", "bad_marker", "unmarked"):
            data[key] = [list(block) for block in data[key]]
        data["unrepairable"] = list(self.unrepairable)
        data["clean"] = self.clean
        return data


def _block_regions(
    features: Any, block_shape: tuple[int, ...], origin: Chunk
) -> Iterator[tuple[slice, ...]]:
    """The inner chunks of the block stored at ``origin`` (its index among the shards, or the
    chunks) as regions of ``features`` (one per unsharded block), lazily, and only those inside
    the array: a shard larger than the array (8 x 8 images in shards of 8192 x 8192) has a
    million inner chunks past its edge, none of them data."""
    chunks, shape = tuple(features.chunks), tuple(features.shape)
    starts = [o * b for o, b in zip(origin, block_shape, strict=True)]
    ends = [min(s + b, n) for s, b, n in zip(starts, block_shape, shape, strict=True)]
    for inner in itertools.product(
        *(range(s, e, c) for s, e, c in zip(starts, ends, chunks, strict=True))
    ):
        yield tuple(slice(i, min(i + c, e)) for i, c, e in zip(inner, chunks, ends, strict=True))


def _check_blocks(store: OutputStore, on_disk: set[Block]) -> dict[Block, str]:
    """The blocks on disk one of whose inner chunks fails to decode, with the first error; the
    regions are generated as they are read (:func:`region_errors` takes them in batches)."""
    features, block_shape, axis = store.features, store.block_shape, store.feature_axis
    regions = (
        (block, region)
        for block in sorted(on_disk)
        for region in _block_regions(features, block_shape, feature_chunk(block, axis))
    )
    return region_errors(features, regions)


def _marker_bits(store: OutputStore) -> tuple[set[Block], set[int]]:
    """``(marked blocks, unreadable marker chunks)``."""
    markers, total = store.markers, store.blocks_total
    bad = set(unreadable_chunks(markers, [(c,) for c in range(marker_chunk_count(total))]))
    marked = {
        store.block_of(first + int(offset))
        for first, bits in store.done_numbers()
        if (first // BLOCKS_PER_CHUNK,) not in bad
        for offset in np.flatnonzero(bits)
    }
    return marked, {chunk for (chunk,) in bad}


def _levels(store: OutputStore) -> tuple[list[str], list[str]]:
    """The pyramid's level paths: ``(written by the blocks, written by the tail pass)``."""
    pyramid = attrs_dict(attrs_dict(store.root.get("output")).get("pyramid"))
    paths = [str(path) for path in pyramid.get("paths", [])]
    written = int(pyramid.get("block_levels", 0))
    return paths[:written], paths[written:]


def _shard_grid(array: Any) -> tuple[int, ...]:
    """Stored objects (shards, or chunks) per axis (``cdata_shape`` counts inner chunks)."""
    size = array.shards or array.chunks
    return tuple(-(-n // s) for n, s in zip(array.shape, size, strict=True))


def _object_errors(array: Any, objects: dict[Chunk, Any], path: str) -> dict[Any, str]:
    """For stored objects ``{index: key}``: the keys whose object fails to decode (whole shards
    are read: every inner chunk decodes), with the first error."""
    size = array.shards or array.chunks
    regions = [
        (
            key,
            tuple(
                slice(i * s, min((i + 1) * s, n))
                for i, s, n in zip(index, size, array.shape, strict=True)
            ),
        )
        for index, key in sorted(objects.items())
    ]
    return {key: f"{path}: {error}" for key, error in region_errors(array, regions).items()}


def _block_level_damage(
    store: OutputStore, marked: set[Block]
) -> tuple[set[Block], dict[Block, str]]:
    """``(marked blocks missing their part of a block level, those whose part does not
    decode)``."""
    missing: set[Block] = set()
    corrupt: dict[Block, str] = {}
    for path in _levels(store)[0]:
        array = array_at(store.group, path)
        grid = _shard_grid(array)
        parts = {feature_chunk(block, store.feature_axis): block for block in marked}
        # the last block of an axis narrower than 2^l has no part of level l
        parts = {
            index: block
            for index, block in parts.items()
            if all(i < n for i, n in zip(index, grid, strict=True))
        }
        stored = stored_chunks(store.path, array, parts)
        missing |= {block for index, block in parts.items() if index not in stored}
        found = _object_errors(array, {index: parts[index] for index in stored}, path)
        for block, error in found.items():
            corrupt.setdefault(block, error)
    return missing, corrupt


def _tail_damage(store: OutputStore) -> dict[str, list[str]]:
    """The tail levels' missing and undecodable objects, by level path (of a complete store:
    the tail is written last)."""
    damaged: dict[str, list[str]] = {}
    for path in _levels(store)[1]:
        array = array_at(store.group, path)
        objects = list(itertools.product(*(range(n) for n in _shard_grid(array))))
        stored = stored_chunks(store.path, array, objects)
        damage = [f"chunk {list(index)}: missing" for index in objects if index not in stored]
        errors = _object_errors(array, {index: index for index in stored}, path)
        damage += [f"chunk {list(index)}: {error}" for index, error in sorted(errors.items())]
        if damage:
            damaged[path] = damage
    return damaged


def _delete_level_parts(store: OutputStore, blocks: tuple[Block, ...], tails: list[str]) -> None:
    """Delete the damaged blocks' parts of the block levels, and the damaged tail levels whole
    (a shard is rewritten through Zarr, which reads the one it replaces first)."""
    block_paths, _ = _levels(store)
    for path in block_paths:
        array = array_at(store.group, path)
        delete_chunks(store.path, array, (feature_chunk(b, store.feature_axis) for b in blocks))
    for path in tails:
        array = array_at(store.group, path)
        delete_chunks(store.path, array, itertools.product(*(range(n) for n in _shard_grid(array))))


def _array_documents(path: str) -> set[str]:
    """The metadata documents of the array at ``path``, in either Zarr format."""
    return {f"{path}/{name}" for name in ("zarr.json", ".zarray", ".zattrs")}


def _other_arrays(store: OutputStore, documents: Mapping[str, str]) -> dict[str, list[str]]:
    """Damaged chunks of every array but the features (level 0 and the pyramid's levels) and
    the markers, by array path."""
    damaged: dict[str, list[str]] = {}
    skipped = {"features", "_job/done", *itertools.chain(*_levels(store))}
    for path, array in store.arrays():
        if path in skipped or _array_documents(path) & documents.keys():
            continue
        chunks = list(itertools.product(*(range(n) for n in array.cdata_shape)))
        errors = unreadable_chunks(array, stored_chunks(store.path, array, chunks))
        if errors:
            damaged[path] = [f"chunk {list(c)}: {e}" for c, e in sorted(errors.items())]
    return damaged


def _repair(
    store: OutputStore, report: VerifyReport, bad_marker_chunks: set[int], on_disk: set[Block]
) -> tuple[str, ...]:
    """Undo what can be recomputed; return what cannot."""
    feature_axis, grid = store.feature_axis, store.grid_shape
    delete_chunks(
        store.path, store.features, (feature_chunk(b, feature_axis) for b in report.corrupted)
    )
    _, tail_paths = _levels(store)
    _delete_level_parts(
        store, report.damaged, [path for path in tail_paths if path in report.arrays]
    )
    writer = store.marker_writer(lambda: None)
    good = on_disk - set(report.corrupted)
    for chunk in sorted(bad_marker_chunks):  # rebuilt from the blocks that are on disk and decode
        first = chunk * BLOCKS_PER_CHUNK
        for number in range(first, min(first + BLOCKS_PER_CHUNK, store.blocks_total)):
            writer.mark(number, store.block_of(number) in good)
    for block in (*report.missing, *report.corrupted):
        writer.mark(block_number(block, grid), done=False)
    writer.flush()
    recomputable = _recomputable(store)
    for name in recomputable:
        if name in report.arrays:
            _rewrite_coordinate(store, name)
    unrepairable = tuple(
        [*(f"{path} ({error})" for path, error in report.documents.items())]
        + [name for name in report.arrays if name not in (*recomputable, *tail_paths)]
    )
    state.finish_job(
        store,
        "interrupted",
        blocks_done=store.count_done(),
        owner=None,
        error=f"verify --repair cleared {len(report.damaged)} damaged block(s); finish the job "
        "with " + spoken("'featuremap run ... --resume'", "featuremap.run(..., resume=True)"),
    )
    return unrepairable


def _recomputable(store: OutputStore) -> tuple[str, ...]:
    """The store's spatial coordinate arrays: ``y, x``, and ``z`` for a 3-D stack's."""
    return RECOMPUTABLE[-store.spatial_ndim :]


def _rewrite_coordinate(store: OutputStore, name: str) -> None:
    """A spatial coordinate from the recorded placement: translation + scale * (offset + i * jump)."""
    attrs: Any = store.features.attrs.get("featuremap")
    axis = _recomputable(store).index(name)
    placement = store.root.get("input", {}).get("placement", {}).get(name, {})
    scale = float(placement.get("scale", 1.0))
    translation = float(placement.get("translation", 0.0))
    array = array_at(store.group, name)
    offset, jump = float(attrs["offset"][axis]), int(attrs["jump"][axis])
    array[...] = translation + scale * (offset + jump * np.arange(array.shape[0], dtype=np.float64))


def verify_store(store: str | os.PathLike[str], *, repair: bool = False) -> VerifyReport:
    """Read the whole store and check every block against its done-marker.

    Parameters
    ----------
    store : str
        A featuremap output store.
    repair : bool
        Restore what can be recomputed afterwards (see the module). Refused while the store's job
        is running.

    Raises
    ------
    InputError
        ``store`` is not a featuremap output store.
    StoreBusyError
        ``repair`` on a store whose job is running.
    BrokenStoreError
        The store's bookkeeping is too damaged to check its blocks (the message names the file).
    """
    path = os.fspath(store)
    output = open_output(path, "r+" if repair else "r")
    documents = metadata_documents(path)
    if repair:
        state.check_takeover(output, fingerprint=None)
        local = local_path(path)
        if local is not None:  # prove it first: a repair that stops half-way is new damage
            check_writable(path, local, action="repair")
    status = state.job_status(output)
    marked, bad_marker_chunks = _marker_bits(output)
    on_disk = output.stored_blocks()
    corrupt = _check_blocks(output, on_disk)
    level_missing, level_corrupt = _block_level_damage(output, marked & on_disk)
    tails = _tail_damage(output) if status["status"] == "complete" else {}
    for block, error in level_corrupt.items():
        corrupt.setdefault(block, error)
    bad_marker = {
        output.block_of(number)
        for chunk in bad_marker_chunks
        for number in range(
            chunk * BLOCKS_PER_CHUNK, min((chunk + 1) * BLOCKS_PER_CHUNK, output.blocks_total)
        )
    }
    report = VerifyReport(
        store=path,
        status=status["status"],
        blocks_total=output.blocks_total,
        blocks_done=len(marked),
        chunks_read=len(on_disk),
        missing=tuple(sorted((marked - on_disk) | (level_missing - set(corrupt)))),
        corrupted=tuple(sorted(corrupt)),
        bad_marker=tuple(sorted(bad_marker)),
        unmarked=tuple(sorted(on_disk - marked - set(corrupt) - bad_marker)),
        arrays=_other_arrays(output, documents) | tails,
        documents=dict(documents),
        errors={",".join(map(str, b)): e for b, e in sorted(corrupt.items())}
        | {f"marker chunk {c}": "unreadable" for c in sorted(bad_marker_chunks)},
    )
    if repair and not report.clean:
        unrepairable = _repair(output, report, bad_marker_chunks, on_disk)
        report = replace(report, repaired=True, unrepairable=unrepairable)
    return report
