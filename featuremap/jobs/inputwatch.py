"""The input is the one the job started with: its content identity, recorded when the job was
planned (:func:`featuremap.io.chunks.content_identity`: every chunk's key, size and modification
time), is checked again while the blocks run and once more before the store may read
``complete``.

An input rewritten under a running job (same metadata, other pixels) would otherwise leave a
result that mixes images of the old input and the new, marked ``complete`` and clean to
``verify``. The identity costs one listing and one ``stat`` per chunk, so along the way it is
checked at most every :data:`CHECK_INTERVAL_S` seconds -- and never more often than keeps its
cost to a small share of the job's time -- while the final check always runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from featuremap.errors import JobError, option
from featuremap.io.chunks import content_identity

__all__ = ["CHECK_INTERVAL_S", "InputChangedError", "InputWatch"]

#: The shortest time between two checks while the blocks run.
CHECK_INTERVAL_S = 2.0
#: A check along the way waits at least this many times as long as the last check took, so a
#: huge input is listed for a small share of the job's time (at most 1 / (1 + this)).
_COST_FACTOR = 20.0


class InputChangedError(JobError):
    """The job's input changed while the job ran: its result would mix two inputs."""


class InputWatch:
    """Compares the input's content identity now with the one the job was planned with."""

    def __init__(self, store: str, array: str | None, recorded: Mapping[str, Any]) -> None:
        self.store, self.array, self.recorded = store, array, dict(recorded)
        self._next_check = time.monotonic() + CHECK_INTERVAL_S

    def check(self) -> None:
        """Check now.

        Raises
        ------
        InputChangedError
            The input's chunks differ (in number, size or modification time) from the start.
        """
        started = time.monotonic()
        now = content_identity(self.store, self.array)
        took = time.monotonic() - started
        self._next_check = time.monotonic() + max(CHECK_INTERVAL_S, _COST_FACTOR * took)
        if now != self.recorded:
            raise InputChangedError(
                f"the input {self.store!r} changed while the job ran (the sizes or modification "
                "times of its chunks differ from the start); the result would mix the old input "
                f"and the new, so it is not finished: rerun with {option('overwrite')} once the "
                "input is settled"
            )

    def check_now_and_then(self) -> None:
        """:meth:`check`, when the last check is long enough ago."""
        if time.monotonic() >= self._next_check:
            self.check()
