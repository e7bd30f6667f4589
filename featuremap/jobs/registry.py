"""The jobs a cluster knows (DESIGN section 9): who asked for each, and how far it got.

Every job publishes a :class:`JobRecord` in its scheduler's metadata, under
``("featuremap", "jobs", <id>)`` (``Client.set_metadata``): a plain ``dask scheduler`` keeps it,
nothing has to be installed on it, and each job writes only its own key, so concurrent jobs never
race. The record lives as long as the scheduler does; the job's store stays the durable truth:
:func:`list_jobs` reconciles each record with its store's status (a job whose driver died is
``interrupted`` there whatever the scheduler last heard).

A job's id is its fencing token (:class:`featuremap.jobs.state.JobOwner`); it is shown, and
accepted, as its first :data:`ID_LENGTH` hex digits.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from featuremap.errors import InputError
from featuremap.jobs.state import REVOKED, read_status, utc_now

__all__ = [
    "ACTIVE",
    "ID_LENGTH",
    "JobRecord",
    "JobTicket",
    "current",
    "find_job",
    "job_documents",
    "list_jobs",
    "publish",
    "records_of",
    "registered",
    "short_id",
    "submitter",
    "task_prefix",
]

#: The scheduler metadata path under which the jobs are kept.
REGISTRY = ("featuremap", "jobs")
#: Job states that still use the cluster.
ACTIVE = ("queued", "running")
#: Hex digits of a job id shown and accepted.
ID_LENGTH = 12


def short_id(job: str) -> str:
    """The id of job ``job`` (its token) as shown: the first :data:`ID_LENGTH` digits."""
    return job[:ID_LENGTH]


def task_prefix(job: str) -> str:
    """What the Dask keys of job ``job``'s tasks start with: ``featuremap-<id>-``."""
    return f"featuremap-{short_id(job)}-"


def submitter() -> str:
    """The person asking, as ``user@host`` (never a worker process)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _from_mapping(cls: type, value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise InputError(f"not a featuremap job record: {value!r:.80}")
    return cls(**{field.name: value[field.name] for field in fields(cls) if field.name in value})


@dataclass(frozen=True)
class JobTicket:
    """Who asked for a job, how urgently, through which scheduler, and where its log is; kept
    in the store's ``_job`` record as ``ticket``."""

    submitter: str
    priority: int = 0
    scheduler: str | None = None
    log: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: Any) -> JobTicket:
        return _from_mapping(cls, value)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class JobRecord:
    """One job as the cluster knows it (``featuremap jobs --json`` lists these)."""

    id: str
    pipeline: str | None
    store: str
    submitter: str
    priority: int
    state: str
    blocks_done: int
    blocks_total: int
    started: str
    updated: str
    error: str | None = None
    log: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: Any) -> JobRecord:
        return _from_mapping(cls, value)  # type: ignore[no-any-return]

    def updated_to(self, **changes: Any) -> JobRecord:
        """This record with ``changes``, stamped now."""
        return replace(self, updated=utc_now(), **changes)


def publish(client: Any, record: JobRecord) -> None:
    """Tell the scheduler about ``record`` (best effort: the store is the truth, and a job never
    fails because its scheduler could not be told)."""
    with suppress(Exception):  # the registry only mirrors the stores
        client.set_metadata([*REGISTRY, record.id], record.to_dict())


def records_of(entries: Any) -> list[JobRecord]:
    """The job records among the registry's metadata ``entries`` (``{id: record}``), oldest
    first."""
    records = []
    for value in entries.values() if isinstance(entries, Mapping) else ():
        try:
            records.append(JobRecord.from_dict(value))
        except (InputError, TypeError):  # someone else's entry: not a job record
            continue
    return sorted(records, key=lambda record: (record.started, record.id))


def registered(client: Any) -> list[JobRecord]:
    """Every job the scheduler has heard of, oldest first."""
    return records_of(client.get_metadata(list(REGISTRY), default={}))


def reconcile(record: JobRecord) -> JobRecord:
    """``record`` corrected by its store, the durable truth: its status and blocks done while
    the store is the job's (or was, until cancelled); as recorded when the store cannot be read
    or now belongs to another job."""
    try:
        info = read_status(record.store)
    except Exception:  # noqa: BLE001 -- gone or unreachable from here: what the cluster heard
        return record
    owner = info.get("owner") if isinstance(info.get("owner"), Mapping) else {}
    token = owner.get("id") if isinstance(owner, Mapping) else None
    if token not in (record.id, REVOKED + record.id):
        if record.state in ACTIVE:
            return replace(record, state="failed", error="its store was taken over by another job")
        return record
    status = info["status"]
    queued = record.state == "queued" and status == "running"
    return replace(
        record,
        state="queued" if queued else status,
        blocks_done=int(info["blocks_done"]),
        blocks_total=int(info["blocks_total"]),
        error=info.get("error") or record.error,
    )


def current(records: list[JobRecord], *, finished: bool = False) -> list[JobRecord]:
    """``records`` reconciled with their stores: the queued and running ones, and with
    ``finished`` also those that ended (complete, failed, cancelled, interrupted)."""
    reconciled = [reconcile(record) for record in records]
    return [record for record in reconciled if finished or record.state in ACTIVE]


def list_jobs(client: Any, *, finished: bool = False) -> list[JobRecord]:
    """The cluster's jobs, reconciled with their stores: the queued and running ones, and with
    ``finished`` also those that ended (complete, failed, cancelled, interrupted)."""
    return current(registered(client), finished=finished)


def job_documents(records: list[JobRecord]) -> list[dict[str, Any]]:
    """``records`` as the JSON list that ``featuremap jobs --json`` prints and the dashboard's
    jobs page serves (one function for both, so they never differ)."""
    return [record.to_dict() for record in records]


def find_job(client: Any, job: str) -> JobRecord:
    """The job whose id starts with ``job`` (at least 4 digits).

    Raises
    ------
    InputError
        No job, or more than one, has such an id.
    """
    matches = (
        [record for record in registered(client) if record.id.startswith(job)]
        if len(job) >= 4
        else []
    )
    if len(matches) != 1:
        found = "no job" if not matches else f"{len(matches)} jobs"
        raise InputError(
            f"{found} on this cluster with an id starting {job!r}; list them with "
            "'featuremap jobs --all', or give the job's output store"
        )
    return matches[0]
