"""Fair share of a cluster between the jobs that run on it at once (DESIGN section 9).

Dask never preempts a task and knows nothing of fairness between clients
(dask/distributed#4610): whoever submits more tasks holds more of the scheduler's queue, and a
job submitted behind a backlog waits for all of it. So each job's driver limits its own tasks in
flight: the cluster's window (:func:`window_size`: a few tasks per worker thread) is split among
the jobs running on it, re-read from the cluster's registry (:mod:`.registry`) at every refill.

Dask orders the queue by priority, then by its "generation": for tasks submitted from a task
(a submitted job's driver) that is the driver's priority, the same for every batch, and then
by the task's place in its own batch -- so a batch just submitted goes before the rest of an
older one, and the job that refilled last is served first: two such jobs measured 9 % / 91 %
of the blocks over 10 s. Each batch is therefore submitted under :func:`task_priority`, the
job's priority less a small amount that grows with time, which makes the queue first in, first
out between the jobs' batches, whoever submitted them.

A job counts the running jobs of its own priority or higher. Jobs of equal priority split the
window evenly, so however many run, the queue holds about one window and a newcomer waits behind
at most that; Dask's queue interleaves equal priorities in the order their batches came, so each
gets an even part of the throughput. A job of higher priority is not shrunk by lower ones (its
tasks go first anyway, Dask's own ordering), and a lower one only fills the threads the higher
ones leave free, from a small window.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from featuremap.jobs.registry import JobRecord, registered

__all__ = [
    "MIN_SHARE",
    "MIN_WINDOW",
    "REFRESH_S",
    "STALE_S",
    "TASKS_PER_THREAD",
    "FairShare",
    "fair_window",
    "window_size",
]

#: Tasks in flight per worker thread: enough that a worker never waits for its next block.
TASKS_PER_THREAD = 4
#: The smallest window, whatever the cluster: the window is refilled half at a time, one
#: ``client.map`` each, and every submission leaves Dask records that outlive the job (see
#: :func:`featuremap.jobs.execute._stream_blocks`). On 2 single-threaded workers a window of 8
#: made that one submission per 4 blocks; at 64 it is one per 32 (client + scheduler peak RSS at
#: 16 384 trivial blocks 154 -> 148-149 MiB, at 131 044 blocks 187 -> 182 MiB). The tasks beyond
#: the workers' threads wait in the scheduler's queue: a block index each, no data.
MIN_WINDOW = 64
#: The smallest share of the window a job gets, however many jobs run: one task per thread of a
#: small cluster and its refill, so that no job stalls for its own driver's round trips.
MIN_SHARE = 8
#: A running job whose registry record was not updated for this long no longer counts: its
#: driver died without telling the scheduler (a job publishes its progress every second while its
#: blocks finish, :data:`featuremap.jobs.tracking.PUBLISH_INTERVAL_S`).
STALE_S = 60.0
#: How often a job re-reads its share: jobs start and end seconds apart, while a refill comes
#: every few blocks (milliseconds apart for small ones), and each read is two scheduler round
#: trips (the workers' threads, the registry).
REFRESH_S = 1.0


#: What :func:`task_priority` takes off a job's priority per second of the clock: small enough
#: that a century of seconds stays under 1 (a priority step), large enough for a double to tell
#: apart batches milliseconds apart at the priorities people use (|p| < 10^3).
FIFO_PER_S = 1e-10


def task_priority(priority: int, now: float | None = None) -> float:
    """The Dask priority of a batch submitted ``now`` (default: the clock) by a job of
    ``priority``: earlier batches first among equal priorities, whichever job sent them."""
    return priority - FIFO_PER_S * (time.time() if now is None else now)


def window_size(client: Any) -> int:
    """The cluster's window: :data:`TASKS_PER_THREAD` per worker thread, at least
    :data:`MIN_WINDOW`."""
    threads = sum(client.nthreads().values()) if hasattr(client, "nthreads") else 1
    return max(MIN_WINDOW, TASKS_PER_THREAD * max(threads, 1))


def _fresh(record: JobRecord, now: float) -> bool:
    try:
        updated = datetime.fromisoformat(record.updated).timestamp()
    except (TypeError, ValueError):
        return False
    return now - updated <= STALE_S


def _rivals(client: Any, job: str, priority: int) -> int:
    """Other jobs running on ``client``'s cluster at ``priority`` or higher; 0 when the
    registry cannot be read (the job then runs with the whole window, as alone)."""
    try:
        records = registered(client)
    except Exception:  # noqa: BLE001 -- fairness is best effort; the job itself must go on
        return 0
    now = time.time()
    return sum(
        1
        for record in records
        if record.id != job
        and record.state == "running"
        and record.priority >= priority
        and _fresh(record, now)
    )


def fair_window(client: Any, job: str, priority: int) -> int:
    """Tasks job ``job`` may have in flight now: the cluster's window split evenly among the
    running jobs of its priority or higher (itself included), at least :data:`MIN_SHARE`.

    """
    window = window_size(client)
    return max(MIN_SHARE, window // (1 + _rivals(client, job, priority)))


class FairShare:
    """A job's :func:`fair_window`, re-read from the cluster at most every :data:`REFRESH_S`:
    ``share()`` is what the job may have in flight now."""

    def __init__(self, client: Any, job: str, priority: int) -> None:
        self._client, self._job, self._priority = client, job, priority
        self._share = 0
        self._read_at = -REFRESH_S  # monotonic seconds; the first call reads

    def __call__(self) -> int:
        now = time.monotonic()
        if now - self._read_at >= REFRESH_S:
            self._share = fair_window(self._client, self._job, self._priority)
            self._read_at = now
        return self._share
