"""SIGINT and SIGTERM in the ``featuremap`` command: both unwind the command like Ctrl-C.

The handler raises :class:`Interrupted` in the main thread at once. Python drops an exception
raised while a finalizer runs, though (a Dask ``Future.__del__`` mid garbage collection prints
"Exception ignored in ..." and goes on), and a run signalled at that moment went on to
``complete``. So the handler also records the signal, and :func:`raise_pending` -- called at the
command's checkpoints, every progress report of a running job -- raises it again until it has
been acted on; and the "Exception ignored" report of such a swallowed interrupt is not printed
(:func:`_quiet_interrupts`: the command's one line says it, once it stops).
"""

from __future__ import annotations

import signal
import sys
from typing import Any

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


def _quiet_interrupts(unraisable: Any) -> None:
    """``sys.unraisablehook``: an :class:`Interrupted` that a finalizer swallowed is pending
    (:func:`raise_pending` raises it again), not an error to print; anything else goes to the
    hook that was there before."""
    if not isinstance(unraisable.exc_value, Interrupted):
        _previous_hook(unraisable)


_previous_hook = sys.unraisablehook


def install_handlers() -> None:
    """SIGINT and SIGTERM raise :class:`Interrupted` (none pending yet); an interrupt a
    finalizer swallowed is not printed."""
    global _previous_hook
    clear_pending()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    if sys.unraisablehook is not _quiet_interrupts:
        _previous_hook = sys.unraisablehook
        sys.unraisablehook = _quiet_interrupts


def clear_pending() -> None:
    """The signals received so far have been acted on."""
    _pending.clear()


def raise_pending() -> None:
    """Raise :class:`Interrupted` for the first signal received and not yet acted on (one whose
    exception a finalizer swallowed)."""
    if _pending:
        raise Interrupted(_pending[0])
