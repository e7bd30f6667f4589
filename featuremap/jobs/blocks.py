"""The worker side of a job: one task per block reads, computes and writes that block.

A :class:`BlockJob` holds everything every block task needs -- the input's description, the
resolved stack and its per-axis steps, the output layout, the store and the job's token -- and
is sent to each worker once (scattered), so a task's own arguments are only its block index.

:func:`run_block` plans the block's input window (:func:`featuremap.engine.blockplan.plan_axis`,
borders folded), reads exactly that window from the input's Zarr chunks (no separate halo
tasks: a halo is cut from the neighbouring chunks, which stay decoded in the worker's small
chunk cache for the neighbouring blocks, :mod:`featuremap.io.chunk_cache`), runs the fused stack
on the worker's device, checks that the job still owns the store (the fencing check,
:func:`check_owner`: before starting, so that a cancelled job starts no block, and right before
writing) and writes the block. What travels back is the block's per-feature statistics (five
numbers a feature, for the store's display metadata: :mod:`featuremap.io._display`), never its
data; the blocks each device computed are counted on the worker (:func:`blocks_per_device`,
collected once at the end).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from featuremap._typing import Array
from featuremap.cluster.devices import array_device, block_device, to_device
from featuremap.engine.blockplan import AxisStep, plan_axis
from featuremap.engine.fused import axis_steps, compute_compact
from featuremap.engine.stack import ResolvedStack
from featuremap.errors import FencedError, InputError, JobCancelledError
from featuremap.io import Block, FeatureStats, InputArray, OutputLayout, read_job_token, write_block
from featuremap.jobs.state import REVOKED

__all__ = [
    "BlockJob",
    "InputRangeError",
    "blocks_per_device",
    "check_owner",
    "check_range",
    "run_block",
]

#: Blocks computed in this worker process, by ``(job token, device)``.
_COMPUTED: Counter[tuple[str, str]] = Counter()


@dataclass(frozen=True)
class BlockJob:
    """What every block task of one job needs (sent to each worker once).

    ``device`` is ``"auto"``, ``"cpu"`` or ``"gpu"``, or ``None`` to keep blocks on NumPy
    without asking (no GPU worker: CuPy is never imported).
    """

    store: str
    token: str
    source: InputArray
    stack: ResolvedStack
    steps: tuple[tuple[AxisStep, ...], ...]  # per spatial axis
    layout: OutputLayout
    device: str | None

    @classmethod
    def create(
        cls,
        *,
        store: str,
        token: str,
        source: InputArray,
        stack: ResolvedStack,
        layout: OutputLayout,
        device: str | None,
    ) -> BlockJob:
        steps = tuple(tuple(axis) for axis in axis_steps(stack))
        return cls(store, token, source, stack, steps, layout, device)


def run_block(job: BlockJob, block: Block) -> FeatureStats:
    """Compute and write one block, counted under the device it ran on (``"cpu"``/``"gpu"``);
    the statistics of the values written.

    Raises
    ------
    FencedError
        The store belongs to another job now: nothing is written.
    """
    check_owner(job)  # a cancelled job starts no block
    slices = job.layout.block_slices(block)
    ndim = len(job.steps)
    batch, spatial = slices[: -ndim - 1], slices[-ndim:]
    plans = tuple(
        plan_axis(steps, out.start, out.stop, [size])
        for steps, out, size in zip(job.steps, spatial, job.source.spatial_shape, strict=True)
    )
    window = job.source.read(
        batch,
        [[(piece.start, piece.stop) for piece in plan.reads] for plan in plans],
        session=job.token,
    )
    check_range(window, block)
    values: Array = window
    if job.device is not None:
        values = to_device(values, block_device(job.device))
    out = compute_compact(job.stack.layers, plans, values)
    check_owner(job)
    stats = write_block(job.store, job.layout, slices, out, session=job.token)
    _COMPUTED[job.token, array_device(out)] += 1
    return stats


class InputRangeError(InputError):
    """Input values beyond the range of float32, the dtype every block is computed in."""


#: The largest magnitude float32 holds: beyond it a value becomes inf when the block is cast.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_range(values: np.ndarray, block: Block) -> None:
    """Refuse finite input values that float32 cannot hold (a float64 input's 1e300): cast
    silently they become inf and spoil every feature whose receptive field sees them. Only a
    float64 (or wider) input can hold them; the check is one pass over its window.

    Raises
    ------
    InputRangeError
        Naming the largest value and the block.
    """
    if values.dtype.kind != "f" or values.dtype.itemsize <= 4:
        return
    largest = float(np.max(np.abs(values), where=np.isfinite(values), initial=0.0))
    if largest > _FLOAT32_MAX:
        raise InputRangeError(
            f"the input holds {largest:.3g} (block {list(block)}), beyond float32's range "
            f"(+-{_FLOAT32_MAX:.3g}) that features are computed in; rescale the input"
        )


def check_owner(job: BlockJob) -> None:
    """The fencing check of a block task: the job still owns its store (read afresh).

    Raises
    ------
    JobCancelledError
        The job was cancelled (``featuremap cancel`` revoked its token).
    FencedError
        The store belongs to another job now.
    """
    token = read_job_token(job.store)
    if token == REVOKED + job.token:
        raise JobCancelledError(f"job {job.token[:12]} was cancelled; block not written")
    if token != job.token:
        raise FencedError(
            f"output store {job.store!r} now belongs to another job; block not written"
        )


def blocks_per_device(token: str) -> dict[str, int]:
    """The blocks of job ``token`` this worker process computed, by device (run on each worker
    when the job ends; a retried block may be counted twice, a lost worker's are lost)."""
    return {device: count for (job, device), count in _COMPUTED.items() if job == token}
