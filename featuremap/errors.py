"""The exception family of featuremap.

Two kinds of failure matter to a user, and the command line maps them to exit statuses:

* :class:`InputError` (a :class:`ValueError`): the request itself is wrong -- a pipeline key, an
  argument, a weight file, a store path, a shape that cannot work. Exit status 2, nothing written.
* :class:`JobError` (a :class:`RuntimeError`): a valid request failed while running -- a worker
  crashed past its retries, the cluster went away. Exit status 1.

Messages are one line that names the thing, the value it had and what is allowed, so that the
command line can print them as ``featuremap: error: <message>`` without a traceback. A fix is
given in the caller's own language: ``overwrite=True`` to a Python caller, ``--overwrite`` on the
command line (:func:`option`, :func:`spoken`; the command line speaks inside
:func:`command_line_names`).
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "BrokenStoreError",
    "CRSWarning",
    "FeaturemapError",
    "FencedError",
    "InputError",
    "JobCancelledError",
    "JobError",
    "StoreBusyError",
    "command_line_names",
    "describe",
    "error_line",
    "input_key",
    "option",
    "printable",
    "spoken",
]

#: Whether messages name command-line flags (inside :func:`command_line_names`) or Python
#: keyword arguments. One process runs one command, so a module flag is enough; it is restored
#: on the way out, so that in-process callers of the command line leave Python's names behind.
_command_line = False


@contextmanager
def command_line_names() -> Iterator[None]:
    """Within this block, messages name options as command-line flags (``--overwrite``)."""
    global _command_line
    before, _command_line = _command_line, True
    try:
        yield
    finally:
        _command_line = before


def spoken(command_line: str, python: str) -> str:
    """``command_line`` inside :func:`command_line_names`, ``python`` elsewhere."""
    return command_line if _command_line else python


def option(name: str, value: str = "True") -> str:
    """An option as the caller gives it: ``--allow-large`` on the command line,
    ``allow_large=True`` from Python (``value`` is the Python example value)."""
    return spoken(f"--{name.replace('_', '-')}", f"{name.replace('-', '_')}={value}")


def input_key(key: str) -> str:
    """Where an input selection is given: ``input.KEY / --KEY`` on the command line, the
    pipeline's ``input.KEY`` from Python."""
    return spoken(f"input.{key} / --{key}", f"input.{key} in the pipeline")


class FeaturemapError(Exception):
    """Base class of every error featuremap raises on purpose."""


class InputError(FeaturemapError, ValueError):
    """Bad input: a parameter, pipeline key, path, array or file that cannot be used as given."""


class StoreBusyError(InputError):
    """The output store belongs to a job that is still running."""


class JobError(FeaturemapError, RuntimeError):
    """A valid job failed while it ran (cluster lost, retries exhausted, I/O failure).

    ``log`` is the file holding the whole story (tracebacks included), when one was written.
    """

    def __init__(self, message: str, *, log: str | None = None) -> None:
        super().__init__(message)
        self.log = log


class FencedError(JobError):
    """A job lost its store to another job (which took it over): it stops without writing."""


class JobCancelledError(FencedError):
    """The job was cancelled (``featuremap cancel``): its token was revoked; it stops."""


class BrokenStoreError(InputError):
    """A featuremap store whose bookkeeping or metadata is damaged; the message names the file."""


#: The longest text :func:`describe` returns.
DESCRIBE_WIDTH = 80


class CRSWarning(UserWarning):
    """A CRS that an input names but does not carry: the output is not georeferenced."""


class _ShortRepr(reprlib.Repr):
    """``reprlib`` with small limits: only the first few items of a few levels are ever rendered,
    so the cost and the length of the text do not depend on the size of the value (a YAML alias
    bomb expands to billions of items; a hexadecimal YAML integer can have millions of digits)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxtuple = self.maxlist = self.maxarray = self.maxdeque = 8
        self.maxset = self.maxfrozenset = 8
        self.maxdict = 6
        self.maxstring = DESCRIBE_WIDTH
        self.maxlong = 40
        self.maxother = DESCRIBE_WIDTH

    def repr_int(self, x: int, level: int) -> str:
        # repr() of an int is quadratic in its digits and refused past 4300 of them.
        if x.bit_length() <= 128:
            return super().repr_int(x, level)
        digits = int(x.bit_length() * math.log10(2)) + 1
        return f"<{'negative ' if x < 0 else ''}integer of about {digits} digits>"

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            text = repr(x)
        except Exception:  # noqa: BLE001 -- a value whose repr fails still gets named
            return f"<{type(x).__name__}>"
        return text if len(text) <= self.maxother else text[: self.maxother - 3] + "..."


_SHORT_REPR = _ShortRepr()


def describe(value: Any) -> str:
    """Render ``value`` for an error message: short, unambiguous, one line.

    The text is bounded *before* it is built (:mod:`reprlib`), whatever the size or depth of the
    value: at most 80 characters, long strings, lists and numbers cut with ``...``.
    """
    try:
        text = _SHORT_REPR.repr(value)
    except Exception:  # noqa: BLE001 -- describing a bad value must not hide the error
        text = f"<{type(value).__name__}>"
    if "\n" in text:  # NumPy's repr of an array spans lines
        text = " ".join(text.split())
    return text if len(text) <= DESCRIBE_WIDTH else text[: DESCRIBE_WIDTH - 3] + "..."


#: The longest message :func:`error_line` keeps of a foreign exception.
ERROR_LINE_WIDTH = 200


def error_line(error: BaseException) -> str:
    """``Type: first line of the message`` of an exception, for one-line reports (cut to
    :data:`ERROR_LINE_WIDTH` characters: a library's message may embed raw data)."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    first = text.splitlines()[0]
    if len(first) > ERROR_LINE_WIDTH:
        first = first[: ERROR_LINE_WIDTH - 3] + "..."
    return f"{type(error).__name__}: {first}"


def printable(text: Any) -> str:
    """``text`` made inert for a terminal: control characters (ESC and so every escape sequence,
    OSC, BEL, CR, backspace, the other C0 and C1 codes, DEL) and other unprintable code points
    are shown as Python escapes (``\\x1b``), normal Unicode is kept. Every string that comes
    from data, a pipeline, a store's metadata or a path passes through it before the terminal
    (:func:`featuremap.cli._format.echo` does for everything a command prints)."""
    return "".join(
        char
        if char.isprintable() or char == "\t"
        else char.encode("unicode_escape").decode("ascii")
        for char in str(text)
    )
