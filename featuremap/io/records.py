"""A store's records checked against the data they describe, before anything uses them.

``status``, ``inspect``, ``verify`` and ``--resume`` read a store's bookkeeping -- the block grid
and the owner in ``_job``, the block counts in the root record, the geometry in the ``features``
attributes -- and act on it: iterate the grid, signal the owner's pid, print the geometry. A
record that parses but is wrong (a grid of 10^12 blocks over four, a pid of 10^30, geometry
attributes dropped) would hang them, crash them or mislead them. :func:`check_records` compares
each with what the arrays themselves say and refuses a store whose records disagree, in one
line naming the document and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from featuremap.errors import BrokenStoreError, describe
from featuremap.io.layout import FEATURES, JOB_GROUP, ROOT_KEY
from featuremap.io.sizing import HARD_MAX_BLOCKS

if TYPE_CHECKING:
    from featuremap.io.output import OutputStore

__all__ = ["MAX_PID", "check_records", "expected_grid"]

#: Above Linux's largest pid (``pid_max`` is at most 2^22); anything larger is no process.
MAX_PID = 2**31 - 1
_GEOMETRY_KEYS = ("receptive_field", "jump", "offset")


def _is_count(value: Any, minimum: int = 0) -> bool:
    """A plain integer (not a bool) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def expected_grid(output: OutputStore) -> list[int]:
    """The block grid the stored ``features`` have: stored objects (shards, or chunks) per axis,
    the feature axis left out (one block holds every feature)."""
    features = output.features
    block = output.block_shape
    axis = output.feature_axis
    return [
        -(-int(n) // int(b))
        for i, (n, b) in enumerate(zip(features.shape, block, strict=True))
        if i != axis
    ]


def _broken(output: OutputStore, document: str, problem: str) -> BrokenStoreError:
    from featuremap.io.output import replace_hint

    return BrokenStoreError(
        f"output store {output.path!r} is damaged: {document} {problem}; {replace_hint()}"
    )


def _check_grid(output: OutputStore, job: Mapping[str, Any]) -> int | None:
    """The number of blocks, once the recorded grid matches the features (``None``: a store of
    featuremap 0.1, whose grid is its markers' shape)."""
    grid = job.get("grid")
    if grid is None:
        return None
    document = f"{JOB_GROUP}/zarr.json"
    if not isinstance(grid, list) or not all(_is_count(n, 1) for n in grid):
        raise _broken(
            output, document, f"records the block grid {describe(grid)}, not positive integers"
        )
    expected = expected_grid(output)
    if grid != expected:
        raise _broken(
            output,
            document,
            f"records the block grid {describe(grid)}, but {FEATURES} (shape "
            f"{list(output.features.shape)}, blocks of {list(output.block_shape)}) has {expected}",
        )
    blocks = math.prod(expected)
    if blocks > HARD_MAX_BLOCKS:  # no job makes such a store; checking it would never end
        raise _broken(
            output,
            f"{FEATURES}/zarr.json",
            f"describes {blocks:,} blocks, more than any job writes ({HARD_MAX_BLOCKS:,})",
        )
    return blocks


def _check_counts(output: OutputStore, blocks: int) -> None:
    """The root record's ``blocks_total`` is the grid's; ``blocks_done`` within it."""
    root = output.root
    total, done = root.get("blocks_total"), root.get("blocks_done")
    if total is not None and total != blocks:
        raise _broken(
            output,
            f"the root record ({ROOT_KEY})",
            f"says blocks_total {describe(total)}, but the block grid has {blocks}",
        )
    if done is not None and not (_is_count(done) and done <= blocks):
        raise _broken(
            output,
            f"the root record ({ROOT_KEY})",
            f"says blocks_done {describe(done)}, not a count from 0 to {blocks}",
        )


def _check_owner(output: OutputStore, job: Mapping[str, Any]) -> None:
    """The owner record: an id and a host (strings), a pid of a process or none, a start time."""
    owner = job.get("owner")
    if owner is None:
        return
    problem = None
    if not isinstance(owner, Mapping):
        problem = f"records the owner {describe(owner)}, not a mapping"
    elif not isinstance(owner.get("id"), str) or not isinstance(owner.get("host"), str):
        problem = f"records an owner without an id and a host ({describe(dict(owner))})"
    elif owner.get("pid") is not None and not (
        _is_count(owner.get("pid"), 1) and owner["pid"] <= MAX_PID
    ):
        problem = f"records the owner pid {describe(owner.get('pid'))}, not a process id"
    elif owner.get("start") is not None and not _is_count(owner.get("start")):
        problem = f"records the owner start {describe(owner.get('start'))}, not a count"
    if problem is not None:
        raise _broken(output, f"{JOB_GROUP}/zarr.json", problem)


def _check_geometry(output: OutputStore) -> None:
    """The ``featuremap`` attributes of ``features``: receptive field, jump and offset, one
    number per spatial axis (2 or 3)."""
    geometry = output.features.attrs.get(ROOT_KEY)
    values = [
        geometry.get(key) if isinstance(geometry, Mapping) else None for key in _GEOMETRY_KEYS
    ]
    ranks = {len(v) if isinstance(v, list) else -1 for v in values}
    numbers = all(
        isinstance(v, list)
        and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v
        )
        for v in values
    )
    if not numbers or len(ranks) != 1 or ranks.pop() not in (2, 3):
        raise _broken(
            output,
            f"{FEATURES}/zarr.json",
            f"has no usable geometry attributes ('{ROOT_KEY}': receptive_field, jump and offset, "
            "one number per spatial axis)",
        )


def check_records(output: OutputStore) -> None:
    """Refuse (:class:`~featuremap.errors.BrokenStoreError`) a store whose records disagree
    with its arrays: the block grid, the block counts, the owner, the features' geometry."""
    job = output.job
    blocks = _check_grid(output, job)
    if blocks is not None:
        _check_counts(output, blocks)
    _check_owner(output, job)
    _check_geometry(output)
