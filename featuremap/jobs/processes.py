"""Processes on this host as Linux's ``/proc`` shows them: when one started (to tell it from a
later process given the same pid) and whether it has exited but is not yet collected (a zombie).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["process_exited", "process_start"]


def _proc_stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after ``(comm)`` (which may hold spaces): the state
    first; none where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat.rsplit(")", 1)[-1].split()


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, Linux ``/proc``), to tell it from a
    later process that got the same pid; ``None`` where that cannot be read."""
    fields = _proc_stat(pid)
    return int(fields[19]) if len(fields) > 19 else None


def process_exited(pid: int) -> bool:
    """Whether ``pid`` is a zombie: a process that has exited and waits for its parent to
    collect its status (a ``dask worker`` whose scheduler died, before its parent waits on it)."""
    fields = _proc_stat(pid)
    return bool(fields) and fields[0] in ("Z", "X")
