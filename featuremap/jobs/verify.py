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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from featuremap.io import Block, OutputStore, open_output
from featuremap.io.chunks import (
    chunk_value,
    delete_chunks,
    stored_chunks,
    unreadable_chunks,
)
from featuremap.io.output import feature_chunk
from featuremap.jobs import state

__all__ = ["VerifyReport", "verify_store"]


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


def _marker_values(
    store: OutputStore, blocks: Iterable[Block]
) -> tuple[set[Block], dict[Block, str]]:
    """``(marked, unreadable)``: blocks whose marker is set, and marker chunks that fail to decode."""
    markers = store.markers
    present = sorted(stored_chunks(store.path, markers, blocks))
    bad = unreadable_chunks(markers, present)
    marked = {b for b in present if b not in bad and chunk_value(markers, b).reshape(-1)[0] == 1}
    return marked, bad


def _corrupted(store: OutputStore, blocks: Iterable[Block]) -> dict[Block, str]:
    """Blocks among ``blocks`` whose ``features`` chunk fails to decode."""
    by_chunk = {feature_chunk(block, store.feature_axis): block for block in blocks}
    return {
        by_chunk[chunk]: error
        for chunk, error in unreadable_chunks(store.features, by_chunk).items()
    }


def _repair(store: OutputStore, report: VerifyReport) -> None:
    """Delete damaged chunks and their markers, and leave the store for ``--resume``."""
    delete_chunks(
        store.path, store.features, (feature_chunk(b, store.feature_axis) for b in report.corrupted)
    )
    delete_chunks(store.path, store.markers, report.damaged)
    state.finish_job(
        store,
        "interrupted",
        blocks_done=report.blocks_done - len(report.damaged),
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
    output = open_output(store, "r+" if repair else "r")
    if repair:
        state.check_takeover(output, fingerprint=None)
    status = state.job_status(output)
    blocks = output.blocks()
    marked, bad_markers = _marker_values(output, blocks)
    on_disk = output.stored_blocks()
    corrupt = _corrupted(output, sorted(on_disk))
    report = VerifyReport(
        store=store,
        status=status["status"],
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
        _repair(output, report)
        report = replace(report, repaired=True)
    return report
