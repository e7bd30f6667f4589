"""Following a job while it runs: its registry record (:mod:`.registry`) and its log
(:mod:`.joblog`), from the process that drives it (the ``run`` client, or a submitted job's
driver task on a worker).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from featuremap.errors import FencedError, JobCancelledError, error_line
from featuremap.jobs.execute import Progress
from featuremap.jobs.joblog import JobLog, job_log_path
from featuremap.jobs.plan import JobPlan
from featuremap.jobs.registry import JobRecord, JobTicket, publish, short_id, submitter
from featuremap.jobs.state import JobOwner, utc_now

__all__ = ["PUBLISH_INTERVAL_S", "JobTracker", "job_record", "new_ticket"]

#: The most often a job's progress is published to its scheduler.
PUBLISH_INTERVAL_S = 1.0


def new_ticket(
    plan: JobPlan,
    owner: JobOwner,
    *,
    scheduler: str | None,
    priority: int,
    resume: str | None = None,
) -> JobTicket:
    """The ticket of a job about to start: this user, ``priority``, ``scheduler`` (``None`` for
    a local cluster), the job's log and the command that would resume it (``resume``)."""
    return JobTicket(
        submitter=submitter(),
        priority=priority,
        scheduler=scheduler,
        log=job_log_path(plan.store, owner.id),
        resume=resume,
    )


def job_record(plan: JobPlan, owner: JobOwner, ticket: JobTicket, state: str) -> JobRecord:
    """The registry record of a job about to start, in ``state``."""
    pipeline = plan.root_attrs.get("pipeline")
    now = utc_now()
    return JobRecord(
        id=owner.id,
        pipeline=pipeline.get("name") if isinstance(pipeline, dict) else None,
        store=plan.store,
        submitter=ticket.submitter,
        priority=ticket.priority,
        state=state,
        blocks_done=0,
        blocks_total=plan.layout.blocks_total,
        started=now,
        updated=now,
        log=ticket.log,
        resume=ticket.resume,
    )


class JobTracker:
    """Publishes a job's record as it runs and ends, and writes its log."""

    def __init__(self, client: Any, record: JobRecord) -> None:
        self.client, self.record = client, record
        self.log = JobLog(record.log) if record.log else None
        self._published = 0.0

    def _publish(self, **changes: Any) -> None:
        self.record = self.record.updated_to(**changes)
        publish(self.client, self.record)

    def _write(self, text: str) -> None:
        if self.log is not None:
            self.log.write(text)

    def progress(self, done: int, total: int) -> None:
        """A :data:`featuremap.jobs.execute.Progress` callback: published at most once a
        :data:`PUBLISH_INTERVAL_S`."""
        now = time.monotonic()
        if now - self._published >= PUBLISH_INTERVAL_S or done == total:
            self._published = now
            self._publish(state="running", blocks_done=done, blocks_total=total)

    def _ended(self, error: BaseException) -> None:
        if isinstance(error, JobCancelledError):
            state = "cancelled"
        elif isinstance(error, Exception) and self.client.status == "running":
            state = "failed"
        else:
            state = "interrupted"
        self._write(f"job {short_id(self.record.id)} {state}: {error_line(error)}")
        if self.log is not None and not isinstance(error, FencedError):
            self.log.failure(error)
        self._publish(state=state, error=error_line(error))

    @contextmanager
    def following(self, progress: Progress | None = None) -> Iterator[Progress]:
        """Around executing the job: ``running`` on entry, then how it ended. Yields the
        progress callback to give the job (``progress`` too is told, when given)."""
        self._write(
            f"job {short_id(self.record.id)} ({self.record.pipeline or 'layers'}) writing "
            f"{self.record.store}, submitted by {self.record.submitter}, priority "
            f"{self.record.priority}: started on {JobLog.where()}"
        )

        def told(done: int, total: int) -> None:
            self.progress(done, total)
            if progress is not None:
                progress(done, total)

        self._publish(state="running")
        try:
            yield told
        except BaseException as error:
            self._ended(error)
            raise
        self._write(f"job {short_id(self.record.id)} complete: {self.record.blocks_total} blocks")
        self._publish(state="complete", blocks_done=self.record.blocks_total)
