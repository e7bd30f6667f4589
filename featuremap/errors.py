"""The exception family of featuremap.

Two kinds of failure matter to a user, and the command line maps them to exit statuses:

* :class:`InputError` (a :class:`ValueError`): the request itself is wrong -- a pipeline key, an
  argument, a weight file, a store path, a shape that cannot work. Exit status 2, nothing written.
* :class:`JobError` (a :class:`RuntimeError`): a valid request failed while running -- a worker
  crashed past its retries, the cluster went away. Exit status 1.

Messages are one line that names the thing, the value it had and what is allowed, so that the
command line can print them as ``featuremap: error: <message>`` without a traceback.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FeaturemapError", "InputError", "JobError", "StoreBusyError", "describe", "error_line"]


class FeaturemapError(Exception):
    """Base class of every error featuremap raises on purpose."""


class InputError(FeaturemapError, ValueError):
    """Bad input: a parameter, pipeline key, path, array or file that cannot be used as given."""


class StoreBusyError(InputError):
    """The output store belongs to a job that is still running."""


class JobError(FeaturemapError, RuntimeError):
    """A valid job failed while it ran (cluster lost, retries exhausted, I/O failure)."""


def describe(value: Any) -> str:
    """Render ``value`` for an error message: short, unambiguous, one line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def error_line(error: BaseException) -> str:
    """``Type: first line of the message`` of an exception, for one-line reports."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
