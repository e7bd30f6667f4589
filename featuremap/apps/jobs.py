"""``featuremap jobs``, ``cancel`` and ``logs``: the jobs of a shared cluster (DESIGN section 9).

A job is named by its id (any unique prefix of at least 4 digits, looked up in the cluster's
registry, :mod:`featuremap.jobs.registry`) or by its output store, which needs no cluster:
the store records its job's id, ticket and log.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featuremap._files import read_document
from featuremap.errors import InputError
from featuremap.io import OutputStore, is_url, open_output
from featuremap.jobs.joblog import JobLog
from featuremap.jobs.registry import (
    JobRecord,
    find_job,
    job_documents,
    list_jobs,
    publish,
    registered,
    short_id,
    submitter,
)
from featuremap.jobs.state import REVOKED, cancel_job

__all__ = ["Cancelled", "cancel", "job_documents", "job_log", "jobs"]

#: The largest job log shown (a job logs a few lines, and one traceback per failure).
MAX_LOG_BYTES = 64 << 20


def jobs(client: Any, *, finished: bool = False) -> list[JobRecord]:
    """The cluster's queued and running jobs (all it has heard of with ``finished``)."""
    return list_jobs(client, finished=finished)


def _names_store(target: str) -> bool:
    return is_url(target) or Path(target).exists() or "/" in target or target.endswith(".zarr")


def _store_of(target: str, client: Any) -> str:
    """The output store ``target`` names: itself, or the store of the job with that id."""
    if _names_store(target):
        return target
    if client is None:
        raise InputError(
            f"{target!r} is not a store, and a job id needs the cluster: give --scheduler ADDR "
            "(or set DASK_SCHEDULER_ADDRESS), or the job's output store"
        )
    return find_job(client, target).store


@dataclass(frozen=True)
class Cancelled:
    """What :func:`cancel` did: which job, writing which store, cancelled by whom."""

    id: str
    store: str
    by: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": short_id(self.id), "store": self.store, "by": self.by}


def cancel(target: str, client: Any = None) -> Cancelled:
    """Cancel the job ``target`` names (an id or its store): revoke its fencing token, so it
    writes nothing more and starts no block, and leave its store ``cancelled`` (resumable).

    Raises
    ------
    InputError
        No such job or store, or its job does not run.
    """
    path = _store_of(target, client)
    store = open_output(path, "r+")
    job = store.job_token() or ""
    if job.startswith(REVOKED):
        raise InputError(
            f"job {short_id(job.removeprefix(REVOKED))} in {path!r} is already cancelled"
        )
    by = submitter()
    cancel_job(store, job, by=by)
    _tell(store, client, job, by)
    return Cancelled(job, path, by)


def _log_of(store: OutputStore) -> str | None:
    """The log its ticket names for the job of ``store`` (``None``: a store from before logs)."""
    ticket = store.job.get("ticket")
    log = ticket.get("log") if isinstance(ticket, dict) else None
    return log if isinstance(log, str) else None


def _tell(store: OutputStore, client: Any, job: str, by: str) -> None:
    """Note the cancelling in the job's log and, with a client, in the cluster's registry."""
    log = _log_of(store)
    if log is not None:
        JobLog(log).write(f"job {short_id(job)} cancelled by {by}")
    if client is None:
        return
    for record in registered(client):
        if record.id == job:
            publish(client, record.updated_to(state="cancelled", error=f"cancelled by {by}"))


def job_log(target: str, client: Any = None) -> str:
    """The text of the log of the job ``target`` names (an id or its store).

    Raises
    ------
    InputError
        No such job or store, or its log cannot be read from here.
    """
    path = _store_of(target, client)
    log = _log_of(open_output(path))
    if log is None:
        raise InputError(
            f"the job of {path!r} kept no log (it was started before featuremap logged jobs)"
        )
    try:  # the path is a store record: a FIFO or /dev/zero there must not hang or fill memory
        data = read_document(
            log, "job log", "it is not a log featuremap wrote", limit=MAX_LOG_BYTES
        )
        return data.decode("utf-8", errors="replace")
    except OSError as error:
        raise InputError(
            f"cannot read the log {log!r} of {path!r} ({error.strerror}); a store on object "
            "storage keeps its log on the host that ran the job"
        ) from None
