"""SIGINT and SIGTERM in the ``featuremap`` command: both unwind the command like Ctrl-C.

The handler raises :class:`Interrupted` in the main thread at once. Python drops an exception
raised while a finalizer runs, though (a Dask ``Future.__del__`` mid garbage collection prints
"Exception ignored in ..." and goes on), and a run signalled at that moment went on to
``complete``. So the handler also records the signal, and :func:`raise_pending` -- called at the
command's checkpoints, every progress report of a running job -- raises it again until it has
been acted on.
"""

from __future__ import annotations

import signal

__all__ = ["Interrupted", "clear_pending", "install_handlers", "raise_pending"]

_pending: list[int] = []  # signals received and not yet acted on, in order


class Interrupted(BaseException):
    """SIGINT or SIGTERM: unwinds a command like Ctrl-C (jobs record ``interrupted``), but is not
    a ``KeyboardInterrupt``, so click leaves it to :func:`featuremap.cli.main.main` to report in
    one line."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    _pending.append(signum)
    raise Interrupted(signum)


def install_handlers() -> None:
    """SIGINT and SIGTERM raise :class:`Interrupted` (none pending yet)."""
    clear_pending()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)


def clear_pending() -> None:
    """The signals received so far have been acted on."""
    _pending.clear()


def raise_pending() -> None:
    """Raise :class:`Interrupted` for the first signal received and not yet acted on (one whose
    exception a finalizer swallowed)."""
    if _pending:
        raise Interrupted(_pending[0])
