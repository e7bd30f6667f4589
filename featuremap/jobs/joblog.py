"""A job's log, kept with its store (DESIGN section 9).

A local store keeps it in ``_job/log.txt`` (every run of the job appends to it: started, by
whom, on which worker, how it ended, the traceback of a failure), so ``featuremap logs`` reads it
wherever the job's driver ran. A store on object storage gets it in the driver's
:func:`featuremap.jobs.execute.log_folder` instead, named by the job's id. The store's ``_job``
record names the file either way.
"""

from __future__ import annotations

import os
import socket
import traceback
from dataclasses import dataclass
from pathlib import Path

from featuremap.io import local_path
from featuremap.jobs.execute import log_folder
from featuremap.jobs.state import utc_now

__all__ = ["LOG_NAME", "JobLog", "job_log_path"]

#: The log's name inside a local store's ``_job`` group.
LOG_NAME = "log.txt"


def job_log_path(store: str, job: str) -> str:
    """Where job ``job`` writing ``store`` keeps its log."""
    local = local_path(store)
    if local is not None:
        return str(local / "_job" / LOG_NAME)
    return str(log_folder() / f"{job}.log")


@dataclass(frozen=True)
class JobLog:
    """Appends timestamped lines to a job's log; never raises (the disk may be what failed)."""

    path: str

    def write(self, text: str) -> None:
        """Append ``text`` (one or more lines), each line stamped with the UTC time."""
        stamp = utc_now()
        lines = "".join(f"{stamp} {line}\n" for line in text.rstrip("\n").splitlines())
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as log:
                log.write(lines)
        except OSError:
            pass

    def failure(self, error: BaseException) -> None:
        """The whole story of ``error``, the worker's traceback included."""
        self.write("".join(traceback.format_exception(error)))

    @staticmethod
    def where() -> str:
        """This process, as the log names it: ``host pid N``."""
        return f"{socket.gethostname()} pid {os.getpid()}"
