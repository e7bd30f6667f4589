"""Running a planned job: open its store under the claim, stream the blocks, finish the store.

1. :func:`open_job` creates the output store (or reopens it to resume) under the store's claim,
   writes the job's token first, and marks it ``running``;
2. :func:`execute_job` streams the blocks to the cluster through a bounded window
   (:mod:`featuremap.jobs.stream`; a small local job's "cluster" is threads of this process,
   :class:`featuremap.cluster.inline.InlineCluster`, and the rest of this applies): blocks not yet
   done are generated lazily from the done-markers, at most the job's share of the cluster's
   window is in flight (:func:`featuremap.jobs.share.fair_window`: a few tasks per worker
   thread, split among the jobs running at once), and finished tasks let the next ones in
   half a share at a time. A task reads, computes and writes its own block
   (:func:`featuremap.jobs.blocks.run_block`), so the client and the scheduler hold a window of
   small futures, never a graph of every block: what featuremap keeps is the same at 10^3 and
   10^8 blocks (Dask's own per-submission records are in ``docs/scaling.md``). The job's shared
   data (layers, plan) is one task every block depends on (:func:`~.stream.share_job`), so it
   survives the loss of any worker. As tasks finish, this process sets
   their done-markers (one writer, packed bits, flushed every second:
   :class:`featuremap.io.markers.MarkerWriter`) and reports progress from the finished futures
   themselves, so progress never lags the disk. Each task returns its block's per-feature
   statistics; they are merged here and saved before each marker flush (:class:`_Display`), so
   the display windows cover every block marked done, across ``--resume``. A heartbeat thread
   keeps the store's ``running`` status fresh;
3. the pyramid's tail levels, those too small to be written per block, are pooled from the top
   level the blocks wrote (:func:`featuremap.io.pyramid.write_tail_levels`; on ``--resume``
   again, which rewrites the same bytes);
4. the display windows, the consolidated metadata, then ``status: complete``, are written last.

Every write of the job -- markers, heartbeat, status -- and every block write on a worker is
preceded by the fencing check: a job that lost its store to another job stops without writing.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from featuremap.cluster.devices import DevicePlan
from featuremap.errors import FencedError, JobError, StoreBusyError, error_line
from featuremap.io import (
    FeatureStats,
    OutputStore,
    consolidate,
    create_output,
    local_path,
    sweep_partial_files,
)
from featuremap.io.markers import block_number
from featuremap.io.pyramid import write_tail_levels
from featuremap.jobs import state
from featuremap.jobs.blocks import BlockJob, InputRangeError, blocks_per_device
from featuremap.jobs.claim import claim_store
from featuremap.jobs.inputwatch import InputChangedError, InputWatch
from featuremap.jobs.plan import JobPlan
from featuremap.jobs.share import MIN_WINDOW, TASKS_PER_THREAD, window_size
from featuremap.jobs.state import JobOwner
from featuremap.jobs.stream import RETRIES, block_key, block_threads, share_job, stream_blocks
from featuremap.jobs.target import plan_mode
from featuremap.jobs.worker_loss import worker_loss_line

__all__ = [
    "MIN_WINDOW",
    "RETRIES",
    "TASKS_PER_THREAD",
    "Progress",
    "block_key",
    "execute_job",
    "log_folder",
    "open_job",
    "share_job",
    "window_size",
    "write_log",
]

Progress = Callable[[int, int], None]


def _recheck(plan: JobPlan) -> None:
    """Check the store again under the claim: another job may have started it since planning."""
    mode, _ = plan_mode(
        plan.store,
        resume=plan.mode == "resume",
        overwrite=plan.mode == "overwrite",
        fingerprint=plan.fingerprint,
        input_content=plan.source_content,
    )
    if mode != plan.mode:
        raise StoreBusyError(
            f"output store {plan.store!r} changed while this job was being prepared (another job "
            "wrote it); check it with 'featuremap status' and retry"
        )


def open_job(
    plan: JobPlan, owner: JobOwner, ticket: Mapping[str, Any] | None = None
) -> OutputStore:
    """Create (or reopen, to resume) the output store and mark it ``running`` under ``owner``
    (``ticket``: who asked for the job, :class:`featuremap.jobs.registry.JobTicket`).

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
                job_attrs={"owner": owner.to_dict()},
                overwrite=plan.mode == "overwrite",
            )
        state.start_job(
            store,
            owner=owner,
            fingerprint=plan.fingerprint,
            blocks_total=plan.layout.blocks_total,
            blocks_done=store.count_done(),
            ticket=ticket,
        )
    return store


class _Heartbeat:
    """Refreshes the job's heartbeat and ``blocks_done`` every few seconds from a thread.

    It beats only while ``client`` is connected to its scheduler: a job whose scheduler died
    cannot progress, so its heartbeat must go stale even though this process lives on. A beat
    that finds the store taken over records that in :attr:`fenced`; the job then stops.
    """

    def __init__(self, store: OutputStore, owner: JobOwner, done: int, client: Any) -> None:
        self.store, self.owner, self.done, self.client = store, owner, done, client
        self.fenced: FencedError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="featuremap-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(state.HEARTBEAT_INTERVAL_S):
            if self.client.status != "running":
                continue
            try:
                state.record_progress(self.store, owner=self.owner, blocks_done=self.done)
            except FencedError as error:
                self.fenced = error
                return

    def check(self) -> None:
        """Raise the :class:`FencedError` a beat found, if any."""
        if self.fenced is not None:
            raise self.fenced

    @contextmanager
    def running(self) -> Iterator[_Heartbeat]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


class _Display:
    """The features' display statistics (:mod:`featuremap.io._display`): what earlier runs of
    the job saved, merged with each block this run finishes; saved when the markers flush."""

    def __init__(self, store: OutputStore, features: int) -> None:
        self.store = store
        self.total = store.display_stats(features)
        self._unsaved = False

    def add(self, stats: FeatureStats) -> None:
        self.total = self.total.merge(stats)
        self._unsaved = True

    def save(self) -> None:
        if self._unsaved:
            self.store.save_display_stats(self.total)
            self._unsaved = False


def _stream_blocks(
    client: Any,
    plan: JobPlan,
    devices: DevicePlan,
    store: OutputStore,
    owner: JobOwner,
    on_block: Callable[[tuple[int, ...], FeatureStats], None],
    check: Callable[[], None],
    priority: int,
) -> None:
    """Every block not yet done, through :func:`featuremap.jobs.stream.stream_blocks`."""
    job = BlockJob.create(
        store=plan.store,
        token=owner.id,
        source=plan.source,
        stack=plan.stack,
        layout=plan.layout,
        # without any GPU worker no task so much as imports CuPy
        device=devices.requested if devices.gpu_workers else None,
        threads=block_threads(client, plan.layout.blocks_total),
    )
    stream_blocks(
        client,
        job,
        store.undone_blocks(),
        on_block,
        check,
        priority=priority,
        restrictions=devices.task_restrictions(),
    )


def _write_tail(plan: JobPlan, store: OutputStore, owner: JobOwner) -> None:
    """The pyramid's tail levels, once every block (and so every block level) is written."""
    pyramid = plan.layout.pyramid
    if pyramid is None or store.count_done() != plan.layout.blocks_total:
        return
    write_tail_levels(
        store.group, pyramid, plan.layout.ndim, lambda: state.check_token(store, owner)
    )


def _count_devices(client: Any, token: str) -> dict[str, int]:
    """Blocks per device of job ``token``, summed over the workers' own counters."""
    try:
        counts = client.run(blocks_per_device, token)
    except Exception:  # noqa: BLE001 -- provenance only: never fail a finished job over it
        return {}
    total: Counter[str] = Counter()
    for worker_counts in counts.values():
        total.update(worker_counts)
    return dict(total)


def execute_job(
    client: Any,
    plan: JobPlan,
    store: OutputStore,
    owner: JobOwner,
    devices: DevicePlan,
    progress: Progress | None = None,
    priority: int = 0,
) -> tuple[int, int]:
    """Compute every block without a done-marker, then finish the store (block tasks under
    Dask ``priority``).

    Returns ``(blocks_computed, blocks_skipped)``.

    Raises
    ------
    JobError
        A block failed past its retries (the store is left ``failed``; an interrupt leaves it
        ``interrupted``). :class:`FencedError` when another job took the store over: then
        nothing more is written.
    """
    total = plan.layout.blocks_total
    skipped = store.count_done()
    heartbeat = _Heartbeat(store, owner, skipped, client)
    display = _Display(store, plan.layout.shape[-plan.layout.ndim - 1])
    markers = store.marker_writer(lambda: state.check_token(store, owner), display.save)
    grid = plan.layout.grid_shape
    watch = InputWatch(plan.source.path, plan.source.name, plan.source_content)
    computed = 0

    def on_block(block: tuple[int, ...], stats: FeatureStats) -> None:
        nonlocal computed
        watch.check_now_and_then()  # before the block is marked: it may hold the new input
        display.add(stats)
        markers.mark(block_number(block, grid))
        computed += 1
        heartbeat.done = skipped + computed
        if progress is not None:
            progress(heartbeat.done, total)

    if progress is not None:
        progress(skipped, total)
    try:
        with heartbeat.running():
            _stream_blocks(client, plan, devices, store, owner, on_block, heartbeat.check, priority)
            watch.check()  # the last word before the markers make the result whole
            markers.flush()
            _write_tail(plan, store, owner)
    except BaseException as error:
        lost = error if isinstance(error, FencedError) else _lost_store(store, owner)
        if lost is not None:  # whatever failed, the store is another job's now: never touch it
            raise lost from (None if lost is error else error)
        told = isinstance(error, (InputChangedError, InputRangeError))  # whole: they are ours
        reason = str(error) if told else worker_loss_line(client, error) or error_line(error)
        unrecorded = _stop(store, owner, markers, client, error, reason)
        if isinstance(error, Exception):
            raise JobError(
                f"job writing {plan.store!r} failed after {computed} of "
                f"{total - skipped} blocks: {reason}{unrecorded}",
                log=write_log(plan.store, error),
            ) from error
        raise
    _finish(plan, store, owner, devices, _count_devices(client, owner.id), display.total)
    return total - skipped, skipped


def log_folder() -> Path:
    """Where jobs write their full error logs: ``$FEATUREMAP_LOG_DIR``, else
    ``$XDG_STATE_HOME/featuremap/logs`` (``~/.local/state/featuremap/logs``)."""
    configured = os.environ.get("FEATUREMAP_LOG_DIR")
    if configured:
        return Path(configured)
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "featuremap" / "logs"


def write_log(store: str, error: BaseException) -> str | None:
    """The full story of a failed job (the traceback, the worker's included) in a log file;
    its path, or ``None`` when no log can be written (the disk may be what failed)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = log_folder() / f"{stamp}-{os.getpid()}.log"
    text = f"featuremap job writing {store}\n\n" + "".join(traceback.format_exception(error))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError:
        return None
    return str(path)


def _lost_store(store: OutputStore, owner: JobOwner) -> FencedError | None:
    """The fencing error when another job owns the store now (a job that failed after losing it,
    e.g. reading the new job's markers, reports that and writes nothing); else ``None``."""
    try:
        state.check_token(store, owner)
    except FencedError as fenced:
        return fenced
    except Exception:  # noqa: BLE001 -- the store cannot be read: report the job's own error
        return None
    return None


def _stop(
    store: OutputStore,
    owner: JobOwner,
    markers: Any,
    client: Any,
    error: BaseException,
    reason: str,
) -> str:
    """After a failure or an interrupt: keep the markers of the blocks that did finish and mark
    the store ``interrupted`` (lost scheduler, Ctrl-C, SIGTERM) or ``failed`` -- unless the
    store belongs to another job now, which is never written to.

    Returns ``""``, or why the store's status could not be recorded (the disk may be what
    failed: the job's own error is what the user must see, so this never raises).
    """
    try:
        markers.flush()
        state.release(store, owner=owner)
        lost = not isinstance(error, Exception) or client.status != "running"
        state.finish_job(
            store,
            "interrupted" if lost else "failed",
            blocks_done=store.count_done(),
            owner=owner,
            error=reason,
        )
    except FencedError:
        return ""
    except Exception as unrecorded:  # noqa: BLE001 -- e.g. ENOSPC again: report, do not mask
        return f"; the store's status could not be recorded ({error_line(unrecorded)})"
    return ""


def _finish(
    plan: JobPlan,
    store: OutputStore,
    owner: JobOwner,
    devices: DevicePlan,
    per_device: Mapping[str, int],
    display: FeatureStats,
) -> None:
    """Check every marker is there, write the display windows, consolidate, then write
    ``status: complete`` (last)."""
    written = store.count_done()
    state.release(store, owner=owner)
    if written != plan.layout.blocks_total:
        state.finish_job(
            store, "failed", blocks_done=written, owner=owner, error="blocks missing after the run"
        )
        raise JobError(
            f"job writing {plan.store!r} ended with {written} of {plan.layout.blocks_total} "
            "blocks on disk"
        )
    state.record_devices(
        store, owner=owner, devices=devices.to_dict(), blocks_per_device=dict(per_device)
    )
    if display.count.any():  # none when every block was done by a run that gathered none
        state.record_display(store, owner=owner, stats=display)
    complete = consolidate(plan.store)  # reopened with the consolidated metadata, which it keeps
    state.finish_job(complete, "complete", blocks_done=written, owner=owner)
