"""Integrity check of an output store: every block's chunk against its done-marker.

A block is *done* when its marker is set (DESIGN section 7). :func:`verify_store` reads every
stored chunk of ``features`` -- the ``crc32c`` codec turns a corrupted chunk into an error on
read -- and classifies each block of the grid:

``missing``
    marked done, but its chunk is not on disk (deleted, or the store was copied partially);
``corrupted``
    its chunk is on disk but cannot be decoded (checksum mismatch, truncated file), marked or not;
``bad_marker``
    its marker chunk itself cannot be read;
``unmarked``
    its chunk is on disk without a marker: a block whose job died between data and marker, or
    one not yet reached. Not damage: ``--resume`` recomputes it.

``missing``, ``corrupted`` and ``bad_marker`` blocks are *damage*. Verification only reads;
``repair=True`` (``featuremap verify --repair``) then deletes the damaged chunks and markers and
leaves the store ``interrupted``, so that ``featuremap run --resume`` recomputes exactly those
blocks. ``--resume`` does not read every chunk itself (that would cost a full read of the output
on every resume); it only lists the stored chunks and recomputes marked blocks whose chunk is gone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from itertools import product
from typing import Any

import zarr
from zarr.core.sync import sync

from featuremap import _jobs, _store

__all__ = ["VerifyReport", "stored_blocks", "verify_store"]

#: Chunks read at once: reading is I/O- and decompression-bound, both release the GIL.
READ_THREADS = 8

Block = tuple[int, ...]


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_store` found; block indices are ``(*batch_blocks, block_y, block_x)``."""

    store: str
    status: str
    blocks_total: int
    blocks_done: int
    chunks_read: int
    missing: tuple[Block, ...] = ()
    corrupted: tuple[Block, ...] = ()
    bad_marker: tuple[Block, ...] = ()
    unmarked: tuple[Block, ...] = ()
    repaired: bool = False
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def damaged(self) -> tuple[Block, ...]:
        """Every damaged block, sorted."""
        return tuple(sorted({*self.missing, *self.corrupted, *self.bad_marker}))

    @property
    def clean(self) -> bool:
        return not self.damaged

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("missing", "corrupted", "bad_marker", "unmarked"):
            data[key] = [list(block) for block in data[key]]
        data["clean"] = self.clean
        return data


async def _keys(store: Any, prefix: str) -> list[str]:
    return [key async for key in store.list_prefix(prefix)]


def _chunk_keys(array: zarr.Array) -> set[str]:
    """Keys (relative to the array) of the chunks stored for ``array``."""
    path = array.store_path.path
    prefix = f"{path}/" if path else ""
    return {key[len(prefix):] for key in sync(_keys(array.store_path.store, prefix))}


def _block_chunk(block: Block, feature_axis: bool) -> tuple[int, ...]:
    """Chunk coordinates of a block: ``features`` has one chunk along the feature axis."""
    return (*block[:-2], 0, *block[-2:]) if feature_axis else block


def _grid(group: zarr.Group) -> list[Block]:
    return list(product(*(range(n) for n in group[_jobs.MARKERS].shape)))


def stored_blocks(group: zarr.Group) -> set[Block]:
    """Blocks whose ``features`` chunk is on disk (listed, not read)."""
    features = group[_store.FEATURES]
    keys = _chunk_keys(features)
    encode = features.metadata.encode_chunk_key
    return {block for block in _grid(group) if encode(_block_chunk(block, True)) in keys}


def _read_error(array: zarr.Array, chunk: tuple[int, ...]) -> str | None:
    try:
        array.blocks[chunk]
    except Exception as error:  # any decode failure is damage: crc32c, blosc, a truncated file
        text = str(error).strip()
        return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
    return None


def _unreadable(array: zarr.Array, blocks: Iterable[Block], feature_axis: bool) -> dict[Block, str]:
    """The blocks among ``blocks`` whose chunk in ``array`` fails to decode, with the error."""
    blocks = list(blocks)
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        errors = pool.map(lambda b: _read_error(array, _block_chunk(b, feature_axis)), blocks)
        return {block: error for block, error in zip(blocks, errors) if error is not None}


def _marker_values(markers: zarr.Array, blocks: Iterable[Block]) -> tuple[set[Block], dict[Block, str]]:
    """``(marked, unreadable)``: blocks whose marker is set, and marker chunks that fail to decode."""
    stored = _chunk_keys(markers)
    present = [b for b in blocks if markers.metadata.encode_chunk_key(b) in stored]
    bad = _unreadable(markers, present, feature_axis=False)
    readable = [b for b in present if b not in bad]
    marked = {b for b in readable if markers.blocks[b].reshape(-1)[0] == 1}
    return marked, bad


def _delete(array: zarr.Array, chunks: Iterable[tuple[int, ...]]) -> None:
    path = array.store_path.path
    for chunk in chunks:
        key = array.metadata.encode_chunk_key(chunk)
        sync(array.store_path.store.delete(f"{path}/{key}" if path else key))


def _repair(group: zarr.Group, report: VerifyReport) -> None:
    """Delete damaged chunks and their markers, and leave the store for ``--resume``."""
    _delete(group[_store.FEATURES], (_block_chunk(b, True) for b in report.corrupted))
    _delete(group[_jobs.MARKERS], report.damaged)
    _jobs.finish_job(
        group, "interrupted", blocks_done=report.blocks_done - len(report.damaged),
        error=f"verify --repair cleared {len(report.damaged)} damaged block(s); finish the job "
              "with 'featuremap run ... --resume'",
    )


def verify_store(store: str, *, repair: bool = False) -> VerifyReport:
    """Read every chunk of ``features`` and check it against the done-markers.

    Parameters
    ----------
    store : str
        A featuremap output store.
    repair : bool
        Delete the damaged blocks' chunks and markers afterwards so ``run --resume`` recomputes
        them. Refused while the store's job is running.

    Returns
    -------
    VerifyReport

    Raises
    ------
    InputError
        ``store`` is not a featuremap output store.
    StoreBusyError
        ``repair`` on a store whose job is running.
    """
    store = os.fspath(store)
    group = _store.open_features(store).group
    if repair:
        group = _store.open_output_group(store, "r+")
        _jobs.check_takeover(group, store, fingerprint=None)
    state = _jobs.job_status(group)
    blocks = _grid(group)
    marked, bad_markers = _marker_values(group[_jobs.MARKERS], blocks)
    on_disk = stored_blocks(group)
    corrupt = _unreadable(group[_store.FEATURES], sorted(on_disk), feature_axis=True)
    report = VerifyReport(
        store=store,
        status=state["status"],
        blocks_total=len(blocks),
        blocks_done=len(marked),
        chunks_read=len(on_disk),
        missing=tuple(sorted(marked - on_disk)),
        corrupted=tuple(sorted(corrupt)),
        bad_marker=tuple(sorted(bad_markers)),
        unmarked=tuple(sorted(on_disk - marked - set(corrupt) - set(bad_markers))),
        errors={",".join(map(str, b)): e for b, e in sorted({**bad_markers, **corrupt}.items())},
    )
    if repair and not report.clean:
        _repair(group, report)
        report = replace(report, repaired=True)
    return report
