"""Job bookkeeping inside an output store (DESIGN section 7).

Everything a job needs to be followed, resumed and refused lives in the store itself, so that
``featuremap status`` and ``--resume`` work from the store alone, after any crash:

* the **status** (``running`` -> ``complete`` | ``failed``) and progress in the root attributes
  under ``featuremap``; ``complete`` is written last;
* the **done-markers** (:mod:`featuremap.io.markers`), one bit per block, set by the client
  once the block's task has written it: markers are the truth, ``blocks_done`` in the
  attributes is only a periodic summary;
* the **owner and heartbeat** of the running job in the ``_job`` group's attributes, rewritten
  every :data:`HEARTBEAT_INTERVAL_S` by the process that follows the job. A ``running`` job is
  ``interrupted`` once its owner process on this host is gone or -- another host's, or not yet
  adopted -- once its heartbeat has not *changed* for :data:`HEARTBEAT_TIMEOUT_S` of this host's
  monotonic clock (:mod:`.liveness`; never another host's clock). A store whose job is alive,
  or not known dead, is never taken over (:class:`StoreBusyError`). The owner's id is the job's
  **fencing token**: :func:`check_token` runs before each of the job's writes, so a job that
  lost its store stops without writing (:class:`FencedError`);
* the **claim** (:mod:`.claim`), held only while a job checks the store and marks it
  ``running``, so that of two jobs started at once exactly one proceeds;
* the **fingerprint** (pipeline hash + input identity + software version), which ``--resume``
  must match.

This module decides what the records mean; :class:`featuremap.io.OutputStore` keeps them.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from featuremap._vocabulary import JobStatus
from featuremap.errors import (
    FencedError,
    InputError,
    JobCancelledError,
    StoreBusyError,
    describe,
    option,
)
from featuremap.io import FeatureStats, OutputStore, open_output
from featuremap.jobs.liveness import (
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_TIMEOUT_S,
    Liveness,
    heartbeat_liveness,
    watch_heartbeat,
)
from featuremap.jobs.processes import process_exited, process_start
from featuremap.jobs.queued import QUEUED_TIMEOUT_S, waiting

__all__ = [
    "HEARTBEAT_INTERVAL_S",
    "HEARTBEAT_TIMEOUT_S",
    "QUEUED_TIMEOUT_S",
    "REVOKED",
    "JobOwner",
    "adopt_job",
    "cancel_job",
    "check_takeover",
    "check_token",
    "fingerprint",
    "finish_job",
    "heartbeat_liveness",
    "job_status",
    "new_owner",
    "owner_alive",
    "read_status",
    "record_devices",
    "record_display",
    "record_progress",
    "release",
    "start_job",
    "utc_now",
]

#: The token ``featuremap cancel`` leaves in a store: the cancelled job's own, revoked.
REVOKED = "cancelled-"


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string (what every time attribute holds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def fingerprint(pipeline_hash: str, input_identity: Mapping[str, Any], version: str) -> str:
    """sha256 of what decides the result: the pipeline, the input and featuremap's version."""
    decisive = {"pipeline": pipeline_hash, "input": dict(input_identity), "featuremap": version}
    canonical = json.dumps(decisive, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class JobOwner:
    """Who runs a job: its host, its process (pid and start time) and its id -- the job's
    fencing token. Kept in the store's ``_job`` attributes as :meth:`to_dict`."""

    id: str
    host: str
    pid: int | None = None
    start: int | None = None

    @classmethod
    def new(cls, *, process: bool = True) -> JobOwner:
        """This process, under a fresh id. ``process=False`` leaves the process out: a submitted
        job, whose submitting process exits at once and whose task takes the ownership over when
        it starts (:meth:`adopted`); until then only the heartbeat tells whether it lives."""
        pid = os.getpid() if process else None
        return cls(
            id=uuid.uuid4().hex,
            host=socket.gethostname(),
            pid=pid,
            start=None if pid is None else process_start(pid),
        )

    @classmethod
    def from_dict(cls, value: Any) -> JobOwner | None:
        """The owner a record describes; ``None`` for anything that is not an owner record."""
        if not isinstance(value, Mapping):
            return None
        owner_id, host, pid, start = (value.get(k) for k in ("id", "host", "pid", "start"))
        if not isinstance(owner_id, str) or not isinstance(host, str):
            return None
        return cls(
            owner_id,
            host,
            pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            start if isinstance(start, int) and not isinstance(start, bool) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "start": self.start, "id": self.id}

    def adopted(self) -> JobOwner:
        """The same job (id) run by this process on this host."""
        pid = os.getpid()
        return replace(self, host=socket.gethostname(), pid=pid, start=process_start(pid))

    def alive(self) -> bool | None:
        """Whether the owner process still exists: ``None`` when that cannot be told from here
        (another host, or no process recorded). A stopped process (``SIGSTOP``) is alive; one that
        has exited but not been collected by its parent (a zombie) is not, nor is a pid now used
        by another process (its start time differs)."""
        if self.pid is None or self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return False
        except PermissionError:  # it exists, under another user
            return True
        if process_exited(self.pid):
            return False
        return self.start is None or process_start(self.pid) in (None, self.start)


def new_owner(*, process: bool = True) -> JobOwner:
    """:meth:`JobOwner.new`."""
    return JobOwner.new(process=process)


def owner_alive(owner: JobOwner | None) -> bool | None:
    """:meth:`JobOwner.alive`; ``None`` for no owner."""
    return None if owner is None else owner.alive()


def check_token(store: OutputStore, owner: JobOwner) -> None:
    """The fencing check: refuse to write for ``owner`` once another job owns the store.

    Raises
    ------
    FencedError
        The store's job token (read afresh) is not ``owner``'s.
    """
    token = store.job_token()
    if token == REVOKED + owner.id:
        raise JobCancelledError(f"job {owner.id[:12]} writing {store.path!r} was cancelled")
    if token != owner.id:
        raise FencedError(
            f"output store {store.path!r} now belongs to another job (token "
            f"{str(token)[:12]}); this job stops without writing to it"
        )


def _beat(store: OutputStore, owner: JobOwner, **fields: Any) -> None:
    check_token(store, owner)
    store.update_job({"owner": owner.to_dict(), "heartbeat": time.time(), **fields})


def start_job(
    store: OutputStore,
    *,
    owner: JobOwner,
    fingerprint: str,
    blocks_total: int,
    blocks_done: int = 0,
    ticket: Mapping[str, Any] | None = None,
) -> None:
    """Mark the store ``running`` under ``owner`` (the fingerprint is written with it): the job
    takes the store over, so its token is written without a fencing check. ``ticket`` is who
    asked for the job (:class:`featuremap.jobs.registry.JobTicket`), kept as ``_job/ticket``."""
    store.update_job(
        {
            "owner": owner.to_dict(),
            "heartbeat": time.time(),
            "fingerprint": fingerprint,
            "ticket": dict(ticket or {}),
            "cancelled": None,
        }
    )
    store.update_root(
        status="running",
        fingerprint=fingerprint,
        blocks_total=blocks_total,
        blocks_done=blocks_done,
        started=utc_now(),
        finished=None,
        error=None,
    )


def record_progress(store: OutputStore, *, owner: JobOwner, blocks_done: int) -> None:
    """Refresh the heartbeat and the ``blocks_done`` summary of a running job."""
    _beat(store, owner)
    store.update_root(blocks_done=blocks_done)


def adopt_job(store: OutputStore, owner: JobOwner) -> JobOwner:
    """Take a submitted job over in this process: same job id, this host and pid.

    Raises
    ------
    StoreBusyError
        The store now belongs to another job (it was resumed or overwritten meanwhile).
    """
    current = store.job.get("owner")
    recorded = JobOwner.from_dict(current)
    if recorded is not None and recorded.id == REVOKED + owner.id:
        raise JobCancelledError(f"job {owner.id[:12]} was cancelled before it started")
    if recorded is None or recorded.id != owner.id:
        raise StoreBusyError(
            f"output store {store.path!r} was taken over by another job (owner {describe(current)}); "
            "this submitted job stops"
        )
    adopted = owner.adopted()
    _beat(store, adopted)
    return adopted


def cancel_job(store: OutputStore, job: str, *, by: str) -> None:
    """Revoke job ``job``'s fencing token and mark its store ``cancelled`` (resumable).

    From then on every write of the job -- a block, a marker, a heartbeat -- is refused by its
    fencing check, so its blocks stop within one block and its driver within one heartbeat.

    Raises
    ------
    InputError
        The store's job is not ``job``, or it does not run.
    """
    info = job_status(store)
    owner = JobOwner.from_dict(info["owner"])
    if owner is None or owner.id != job or info["status"] not in ("running", "queued"):
        raise InputError(
            f"job {job[:12]} is not running in {store.path!r} (the store is {info['status']}"
            f"{'' if owner is None or owner.id == job else ', under job ' + owner.id[:12]}); "
            "nothing to cancel"
        )
    revoked = replace(owner, id=REVOKED + job)
    store.update_job({"owner": revoked.to_dict(), "heartbeat": None, "cancelled": by})
    store.update_root(
        status="cancelled",
        blocks_done=store.count_done(),
        finished=utc_now(),
        error=f"cancelled by {by}",
    )


def release(store: OutputStore, *, owner: JobOwner) -> None:
    """Clear the heartbeat: the job no longer runs (written before the final status)."""
    _beat(store, owner, heartbeat=None, released=utc_now())


def record_devices(
    store: OutputStore,
    *,
    owner: JobOwner,
    devices: Mapping[str, Any],
    blocks_per_device: Mapping[str, int],
) -> None:
    """Provenance of where blocks ran: the device plan and this run's block count per device."""
    check_token(store, owner)
    store.update_root(devices=dict(devices), blocks_per_device=dict(blocks_per_device))


def record_display(store: OutputStore, *, owner: JobOwner, stats: FeatureStats) -> None:
    """The features' display windows from the statistics the job gathered (its step before the
    consolidated metadata, which then carries them)."""
    check_token(store, owner)
    store.record_display(stats)


def finish_job(
    store: OutputStore,
    status: JobStatus,
    *,
    blocks_done: int,
    owner: JobOwner | None,
    error: str | None = None,
) -> None:
    """Write the final status (``complete``, ``failed`` or ``interrupted``); a job's last write.

    ``owner`` is the job writing it (fenced like every write of a job); ``None`` for
    ``verify --repair``, which has checked that no job runs.
    """
    if owner is not None:
        check_token(store, owner)
    store.update_root(status=status, blocks_done=blocks_done, finished=utc_now(), error=error)


def _looks_old(heartbeat: float) -> bool:
    """Whether a heartbeat *looks* stale by our clock: when to watch it, never a verdict."""
    return time.time() - heartbeat > HEARTBEAT_TIMEOUT_S


def _heartbeat_liveness(
    store: OutputStore, *, watch: bool, patience_s: float = HEARTBEAT_INTERVAL_S + 1.0
) -> Liveness:
    """Whether the job of ``store`` (owned from elsewhere) beats: from what this host saw of
    its heartbeat before, and (``watch``) by watching it for up to ``patience_s``."""
    heartbeat = store.job.get("heartbeat")
    if not isinstance(heartbeat, (int, float)) or isinstance(heartbeat, bool):
        return "dead"  # released, cancelled, or never started
    if not watch:
        return heartbeat_liveness(store.path, heartbeat)
    return watch_heartbeat(store.path, lambda: store.job.get("heartbeat"), patience_s=patience_s)


def _running_status(store: OutputStore, owner: JobOwner | None) -> JobStatus:
    """``running`` or ``interrupted`` for a store whose records say ``running``.

    A live owner process on this host is never declared dead (a stopped one is still alive); a
    gone one is at once. Otherwise the heartbeat decides: ``alive`` or ``dead`` when this host
    has seen it change or stay still long enough; when not yet, a heartbeat that looks fresh is
    taken as running, and one that looks old is watched for up to one period (a host whose
    clock is behind ours has a live job's heartbeat look old: it changes while watched).
    """
    alive = owner_alive(owner)
    if alive is not None:
        return "running" if alive else "interrupted"
    liveness = _heartbeat_liveness(store, watch=False)
    heartbeat = store.job.get("heartbeat")
    if liveness == "unknown" and isinstance(heartbeat, (int, float)) and _looks_old(heartbeat):
        liveness = _heartbeat_liveness(store, watch=True)
        if liveness == "unknown":  # still for a period, and old by our clock: report it lost
            liveness = "dead"
    return "interrupted" if liveness == "dead" else "running"


def job_status(store: OutputStore) -> dict[str, Any]:
    """``status``, ``blocks_done``, ``blocks_total`` (+ timing and owner) of a store's job.

    ``blocks_done`` counts the markers; a ``running`` job whose owner process is known to be
    gone, or (on another host) whose heartbeat stopped changing, is reported ``interrupted``
    (:func:`_running_status`).
    """
    attrs = store.root
    job_attrs = store.job
    status = attrs.get("status", "running")
    owner = JobOwner.from_dict(job_attrs.get("owner"))
    ticket = job_attrs.get("ticket")
    if status == "running" and waiting(owner, job_attrs.get("heartbeat"), ticket):
        status = "queued"  # submitted, no driver yet: nothing renews its heartbeat
    elif status == "running":
        status = _running_status(store, owner)
    done = store.count_done()
    pipeline = attrs.get("pipeline")
    return {
        "status": status,
        "name": pipeline.get("name") if isinstance(pipeline, Mapping) else None,
        "blocks_done": done,
        "blocks_total": int(attrs.get("blocks_total", 0)),
        "started": attrs.get("started"),
        "finished": attrs.get("finished"),
        "heartbeat": job_attrs.get("heartbeat"),
        "owner": job_attrs.get("owner"),
        "error": attrs.get("error"),
        "overflowed": _overflowed(store),
        "ticket": ticket,
        "log": ticket.get("log") if isinstance(ticket, Mapping) else None,
    }


def _overflowed(store: OutputStore) -> int:
    """Values the stored dtype made infinite; 0 for unreadable records (``verify`` tells)."""
    try:
        return store.overflowed()
    except Exception:  # noqa: BLE001 -- a damaged display record is no reason to fail status
        return 0


def _may_take_over(store: OutputStore, owner: JobOwner | None) -> bool:
    """Whether another job may take ``store`` over: its owner process on this host is gone, or
    its heartbeat has been seen unchanged for :data:`HEARTBEAT_TIMEOUT_S` of this host's own
    clock -- never judged by the writer's clock, so a live job on a host whose clock is off is
    never taken over. Not yet known, the heartbeat is watched until it changes or the timeout
    passes (at most :data:`HEARTBEAT_TIMEOUT_S`)."""
    alive = owner_alive(owner)
    if alive is not None:
        return not alive
    patience = HEARTBEAT_TIMEOUT_S + 1.0
    return _heartbeat_liveness(store, watch=True, patience_s=patience) == "dead"


def _busy_advice(owner: JobOwner | None, ticket: Any) -> str:
    submitted = ticket.get("scheduler") if isinstance(ticket, Mapping) else None
    if owner is not None and submitted:  # a shared worker runs it: never advise to kill that
        return (
            f"it is job {owner.id[:12]} on the cluster {describe(submitted)}: wait for it, or stop "
            f"it with 'featuremap cancel {owner.id[:12]}' (or 'featuremap cancel STORE')"
        )
    if owner is not None and owner.alive():  # never declared dead: it may be stopped
        return (
            f"its process {owner.pid} on this host is alive (perhaps stopped); wait for it, "
            "or end that process first"
        )
    return (
        f"wait for it; a job whose heartbeat this host sees unchanged for "
        f"{HEARTBEAT_TIMEOUT_S:.0f} s is taken over: if it is dead, retry in {HEARTBEAT_TIMEOUT_S:.0f} s"
    )


def check_takeover(store: OutputStore, *, fingerprint: str | None) -> dict[str, Any]:
    """Refuse to touch a store whose job is alive, or (``fingerprint`` given) resume a different job.

    Returns the store's :func:`job_status`.

    Raises
    ------
    StoreBusyError
        The store's job is ``running``: its owner process on this host lives, or its heartbeat
        changes, or has not been seen still for :data:`HEARTBEAT_TIMEOUT_S`.
    InputError
        ``fingerprint`` is given and differs from the store's.
    """
    state = job_status(store)
    owner = JobOwner.from_dict(state["owner"])
    # what status shows is not enough to take a job over: its heartbeat must be seen still (a
    # queued job's does not change until its driver starts: it is never taken over)
    running = store.root.get("status", "running") == "running"
    if state["status"] == "queued" or (running and not _may_take_over(store, owner)):
        raise StoreBusyError(
            f"output store {store.path!r} belongs to a job that is still running "
            f"(owner {describe(state['owner'])}, {state['blocks_done']}/{state['blocks_total']} "
            f"blocks); {_busy_advice(owner, state['ticket'])}"
        )
    stored = store.root.get("fingerprint")
    if fingerprint is not None and stored != fingerprint:
        raise InputError(
            f"cannot resume {store.path!r}: it was written by a different pipeline, input or featuremap "
            f"version (fingerprint {str(stored)[:12]}..., now {fingerprint[:12]}...); "
            f"use {option('overwrite')} to replace it or another {option('output', '...')}"
        )
    return state


def read_status(store: str | os.PathLike[str]) -> dict[str, Any]:
    """Job status of an output store, finished or not (``featuremap status``).

    Returns
    -------
    dict
        ``status`` (``running``, ``complete``, ``failed`` or ``interrupted``: running without a
        heartbeat that changes), ``blocks_done`` (counted from the done-markers), ``blocks_total``, and
        ``started``, ``finished``, ``heartbeat``, ``owner``, ``error``.

    Raises
    ------
    InputError
        ``store`` is not a featuremap output store.
    """
    return job_status(open_output(store))
