"""Why a job failed when the workers running one of its blocks died: one line naming the worker
and the cause.

Dask retries a block whose worker dies (``distributed.scheduler.allowed-failures`` times) and
then fails it with :class:`distributed.KilledWorker`, which names the task and the last worker
but not why it died. The cause is found where Dask keeps it: a nanny that killed its worker for
exceeding its memory limit logs a ``worker-restart-memory`` event at the scheduler (worker,
pid, RSS); any other death (a signal such as SIGKILL, a crash) is said as such, with the pid
and host, whose logs tell the rest.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from typing import Any

from featuremap.errors import printable

__all__ = ["NANNY_LOG_WAIT_S", "worker_loss_line"]

#: How long a failing job waits for the nanny of a dead worker to be reachable again (it
#: restarts the worker in a second or two) to read how the worker died.
NANNY_LOG_WAIT_S = 5.0


def _mib(value: Any) -> str:
    return f"{value / 2**20:.0f} MiB" if isinstance(value, (int, float)) and value else "?"


def _memory_kill(client: Any, address: str) -> dict[str, Any] | None:
    """The nanny's last ``worker-restart-memory`` event for the worker at ``address``."""
    try:
        events = client.get_events("worker-restart-memory")
    except Exception:  # noqa: BLE001 -- the explanation must never replace the error
        return None
    found = [event for _, event in events if isinstance(event, dict)]
    found = [event for event in found if event.get("worker") == address]
    return found[-1] if found else None


def _death_in(logs: Any, pid: Any) -> str | None:
    pattern = re.compile(
        rf"Worker process {pid} (was killed by signal (\d+)|exited with status -?\d+)"
    )
    for lines in logs.values():
        for _, line in lines:
            found = pattern.search(str(line))
            if found is None:
                continue
            if found.group(2) is None:
                return found.group(1)
            number = int(found.group(2))
            try:
                return f"was killed by {signal.Signals(number).name}"
            except ValueError:
                return f"was killed by signal {number}"
    return None


def _death(client: Any, pid: Any) -> str | None:
    """How the worker process ``pid`` ended, from its nanny's log: ``was killed by SIGKILL``,
    ``exited with status 3``; ``None`` when no nanny logged it within
    :data:`NANNY_LOG_WAIT_S` (the scheduler reaches a nanny's log through its new worker)."""
    deadline = time.monotonic() + NANNY_LOG_WAIT_S
    while True:
        try:
            death = _death_in(client.get_worker_logs(nanny=True), pid)
        except Exception:  # noqa: BLE001 -- the explanation must never replace the error
            death = None
        if death is not None or time.monotonic() >= deadline:
            return death
        time.sleep(0.25)


def worker_loss_line(client: Any, error: BaseException) -> str | None:
    """One line for a block that failed because its workers died (``KilledWorker``): which
    worker, and whether it was killed for memory (its limit and RSS) or otherwise (a signal or
    a crash); ``None`` for any other error."""
    # only a job run by distributed (imported then) can lose a worker; a small job never imports it
    killed = getattr(sys.modules.get("distributed"), "KilledWorker", None)
    if killed is None or not isinstance(error, killed):
        return None
    worker = error.last_worker
    address = str(getattr(worker, "address", worker))
    where = (
        f"worker {address} (pid {getattr(worker, 'pid', '?')} on {getattr(worker, 'host', '?')})"
    )
    tries = error.allowed_failures + 1
    task = printable(error.task)
    memory = _memory_kill(client, address)
    if memory is not None:
        cause = (
            f"its nanny killed it for exceeding its memory limit of "
            f"{_mib(getattr(worker, 'memory_limit', None))} (RSS {_mib(memory.get('rss'))}); "
            "give the workers more memory or make the blocks smaller (smaller output chunks)"
        )
    else:
        death = _death(client, getattr(worker, "pid", None))
        cause = (
            f"its process {death} (not over its memory limit: a signal from outside, e.g. the "
            "system's OOM killer, or a crash)"
            if death is not None
            else "its process ended without exceeding its memory limit: it was killed by a "
            "signal (e.g. SIGKILL, the system's OOM killer) or crashed; that host's logs say which"
        )
    return f"{where} died running {task} ({tries} tries, each on a worker that died): {cause}"
