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

from typing import Any

from featuremap.errors import printable

__all__ = ["worker_loss_line"]


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


def worker_loss_line(client: Any, error: BaseException) -> str | None:
    """One line for a block that failed because its workers died (``KilledWorker``): which
    worker, and whether it was killed for memory (its limit and RSS) or otherwise (a signal or
    a crash); ``None`` for any other error."""
    try:
        from distributed import KilledWorker
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    if not isinstance(error, KilledWorker):
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
        cause = (
            "its process ended without exceeding its memory limit: it was killed by a signal "
            "(e.g. SIGKILL, the system's OOM killer) or crashed; that host's logs say which"
        )
    return f"{where} died running {task} ({tries} tries, each on a worker that died): {cause}"
