"""Running a planned job: open its store under the claim, send the blocks, finish the store.

1. :func:`open_job` creates the output store (or reopens it to resume) under the store's claim,
   writes the fingerprint and marks it ``running``;
2. :func:`execute_job` sends one task per missing output block. Each task computes its fused
   stack on the worker and writes its block into its own chunk of ``features``, then its
   done-marker (:func:`featuremap.io.write_block`); block data never travels through the
   client. A heartbeat thread keeps the store's ``running`` status fresh meanwhile;
3. the consolidated metadata, then ``status: complete``, are written last.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from featuremap import _device
from featuremap.errors import JobError, StoreBusyError, error_line
from featuremap.io import (
    Block,
    OutputStore,
    consolidate,
    create_output,
    local_path,
    sweep_partial_files,
    write_block,
)
from featuremap.jobs import state
from featuremap.jobs.claim import claim_store
from featuremap.jobs.plan import JobPlan, plan_mode

__all__ = ["RETRIES", "Progress", "execute_job", "open_job"]

#: Extra attempts for a block task that raised (worker loss is retried by Dask on its own).
RETRIES = 2

Progress = Callable[[int, int], None]


def _recheck(plan: JobPlan) -> None:
    """Check the store again under the claim: another job may have started it since planning."""
    mode, _ = plan_mode(
        plan.store,
        resume=plan.mode == "resume",
        overwrite=plan.mode == "overwrite",
        fingerprint=plan.fingerprint,
    )
    if mode != plan.mode:
        raise StoreBusyError(
            f"output store {plan.store!r} changed while this job was being prepared (another job "
            "wrote it); check it with 'featuremap status' and retry"
        )


def open_job(plan: JobPlan, owner: Mapping[str, Any]) -> OutputStore:
    """Create (or reopen, to resume) the output store and mark it ``running`` under ``owner``.

    Runs under the store's claim, so that of two jobs started at once exactly one gets the
    store; the other raises :class:`StoreBusyError`.
    """
    with claim_store(local_path(plan.store), owner, plan.store):
        _recheck(plan)
        if plan.mode == "resume":
            sweep_partial_files(plan.store)
            store = OutputStore.open(plan.store, "r+")
        else:
            store = create_output(
                plan.store,
                layout=plan.layout,
                geometry_attrs=plan.geometry_attrs,
                weights=plan.weights,
                root_attrs=plan.root_attrs,
                overwrite=plan.mode == "overwrite",
            )
        state.start_job(
            store,
            owner=owner,
            fingerprint=plan.fingerprint,
            blocks_total=plan.layout.blocks_total,
            blocks_done=store.count_done(),
        )
    return store


class _Heartbeat:
    """Refreshes the job's heartbeat and ``blocks_done`` every few seconds from a thread.

    It beats only while ``client`` is connected to its scheduler: a job whose scheduler died
    cannot progress, so its heartbeat must go stale even though this process lives on.
    """

    def __init__(
        self, store: OutputStore, owner: Mapping[str, Any], done: int, client: Any
    ) -> None:
        self.store, self.owner, self.done, self.client = store, owner, done, client
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="featuremap-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(state.HEARTBEAT_INTERVAL_S):
            if self.client.status == "running":
                state.record_progress(self.store, owner=self.owner, blocks_done=self.done)

    @contextmanager
    def running(self) -> Iterator[_Heartbeat]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def _input_dask(plan: JobPlan) -> Any:
    return plan.source.to_dask(plan.read_chunks)


def _compute_blocks(
    client: Any,
    plan: JobPlan,
    devices: _device.DevicePlan,
    todo: Sequence[Block],
    owner: Mapping[str, Any],
    on_block: Callable[[str], None],
) -> None:
    """Send one task per block of ``todo`` and call ``on_block(device)`` as each finishes."""
    from distributed import as_completed

    from featuremap._blockwise import block_tasks

    tasks = block_tasks(
        _input_dask(plan),
        plan.stack,
        write_block,
        out_chunks=plan.layout.out_chunks,
        blocks=todo,
        sink_args=(plan.store, owner["id"], plan.layout.feature_axis),
        # without any GPU worker no task so much as imports CuPy
        device=devices.requested if devices.gpu_workers else None,
    )
    futures = client.compute(list(tasks.values()), retries=RETRIES, **devices.task_restrictions())
    try:
        for future in as_completed(futures):
            on_block(future.result())
    finally:
        client.cancel(futures)


def execute_job(
    client: Any,
    plan: JobPlan,
    store: OutputStore,
    owner: Mapping[str, Any],
    devices: _device.DevicePlan,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Compute every block without a done-marker (or whose chunk is gone), then finish the store.

    Returns ``(blocks_computed, blocks_skipped)``.

    Raises
    ------
    JobError
        A block failed past its retries (the store is left ``failed``; an interrupt leaves it
        ``interrupted``).
    """
    total = plan.layout.blocks_total
    # a marker whose chunk was deleted since does not count: listing the chunks is cheap, reading
    # them is not (corrupted chunks are found by `featuremap verify`)
    done = store.done_blocks() & store.stored_blocks()
    todo = [block for block in store.blocks() if block not in done]
    skipped = total - len(todo)
    heartbeat = _Heartbeat(store, owner, skipped, client)
    per_device: Counter[str] = Counter()

    def on_block(device: str) -> None:
        per_device[device] += 1
        heartbeat.done = skipped + sum(per_device.values())
        if progress is not None:
            progress(heartbeat.done, total)

    if progress is not None:
        progress(skipped, total)
    try:
        with heartbeat.running():
            if todo:
                _compute_blocks(client, plan, devices, todo, owner, on_block)
    except BaseException as error:
        state.release(store, owner=owner)
        # a lost scheduler (or Ctrl-C) interrupts the job, `--resume` finishes it; a block that
        # failed past its retries fails it
        lost = not isinstance(error, Exception) or client.status != "running"
        status = "interrupted" if lost else "failed"
        state.finish_job(store, status, blocks_done=store.count_done(), error=error_line(error))
        if isinstance(error, Exception):
            raise JobError(
                f"job writing {plan.store!r} failed after {sum(per_device.values())} of {len(todo)} "
                f"blocks: {error_line(error)}"
            ) from error
        raise
    _finish(plan, store, owner, devices, per_device)
    return len(todo), skipped


def _finish(
    plan: JobPlan,
    store: OutputStore,
    owner: Mapping[str, Any],
    devices: _device.DevicePlan,
    per_device: Mapping[str, int],
) -> None:
    """Check every marker is there, consolidate, then write ``status: complete`` (last)."""
    written = store.count_done()
    state.release(store, owner=owner)
    if written != plan.layout.blocks_total:
        state.finish_job(store, "failed", blocks_done=written, error="blocks missing after the run")
        raise JobError(
            f"job writing {plan.store!r} ended with {written} of {plan.layout.blocks_total} blocks on disk"
        )
    state.record_devices(store, devices=devices.to_dict(), blocks_per_device=dict(per_device))
    complete = consolidate(plan.store)  # reopened with the consolidated metadata, which it keeps
    state.finish_job(complete, "complete", blocks_done=written)
