"""A submitted job before its driver starts (DESIGN section 9).

``submit`` marks the store ``running`` under an owner without a process, and the job's driver
task adopts it when a worker thread takes the task; until then nothing renews the job's
heartbeat. :func:`featuremap.jobs.state.job_status` reports such a job ``queued`` (not
``interrupted``) while :func:`waiting` says so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

__all__ = ["QUEUED_TIMEOUT_S", "waiting"]

#: How long a submitted job whose driver has not started yet (no process adopted it) reads
#: ``queued``, not ``interrupted``: nothing beats for it while it waits for a worker thread (its
#: driver goes ahead of every block task, so that is about one block's time), and a scheduler
#: lost meanwhile shows only when this has passed.
QUEUED_TIMEOUT_S = 600.0


def waiting(owner: Any, heartbeat: Any, ticket: Any) -> bool:
    """Whether the store's job was submitted to a cluster, no driver has adopted it yet (its
    ``owner``, a :class:`featuremap.jobs.state.JobOwner`, has no process:
    :func:`featuremap.jobs.state.adopt_job` records one), and it was submitted (its
    ``heartbeat``, by the submitter's clock) less than :data:`QUEUED_TIMEOUT_S` ago; after
    that its heartbeat decides, as for any job."""
    submitted = isinstance(ticket, Mapping) and bool(ticket.get("scheduler"))
    return (
        submitted
        and owner is not None
        and owner.pid is None
        and isinstance(heartbeat, (int, float))
        and time.time() - heartbeat <= QUEUED_TIMEOUT_S
    )
