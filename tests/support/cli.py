"""The ``featuremap`` command run in this process: :func:`featuremap.cli.main.main` with its own
stdout, stderr, working directory and environment, for the tests that check what a command says
and returns (refusal tables, argument checks, output formats).

A subprocess costs seconds of interpreter start-up and imports per call; :func:`run_cli` costs
what the command itself does. What only a real process can show (signals, SIGKILL, the console
script's exit status, a job that outlives the command) stays with :mod:`support.procs`.

Every call leaves the process as it found it: the working directory, ``os.environ`` (``main``
sets Dask's logging variable), the SIGINT / SIGTERM handlers (``main`` installs its own), the
warning filters, ``sys.stdout`` / ``sys.stderr``, and Dask's connect timeout. A ``run`` without
``--scheduler`` starts a local cluster and closes it itself. Warnings are shown on the captured
stderr as a fresh interpreter shows them, so that "one line on stderr" still sees a stray
warning.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import REPO

#: What :data:`support.procs.ENV` sets for a child: tracebacks off, short connect timeouts.
ENVIRONMENT = {"FEATUREMAP_DEBUG": ""}
CONNECT_TIMEOUT = "5s"


@dataclass(frozen=True)
class Result:
    """A command's exit status and output (named as in ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` of a plain interpreter: to the (captured) ``sys.stderr``."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _fresh_warnings() -> Iterator[None]:
    """Warning filters and display as in a new interpreter (pytest records them otherwise)."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for action, category in (
            ("ignore", DeprecationWarning),
            ("ignore", PendingDeprecationWarning),
            ("ignore", ImportWarning),
            ("ignore", ResourceWarning),
        ):
            warnings.simplefilter(action, category, append=True)
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        warnings.showwarning = _show_warning
        yield


@contextlib.contextmanager
def _environment(env: Mapping[str, str] | None) -> Iterator[None]:
    """``os.environ`` as ``env`` (the whole environment) or as now plus :data:`ENVIRONMENT`;
    restored afterwards."""
    saved = dict(os.environ)
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        os.environ.update(ENVIRONMENT)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _signal_handlers() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _working_directory(cwd: Path | str) -> Iterator[None]:
    saved = os.getcwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved)


def run_cli(
    *args: object,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    connect_timeout: str = CONNECT_TIMEOUT,
) -> Result:
    """Run ``featuremap ARGS`` in this process, in ``cwd`` (the repository by default, as
    :func:`support.procs.featuremap`); ``env`` replaces the whole environment for the call;
    ``connect_timeout`` is Dask's (a scheduler that is meant to be unreachable needs little).
    Its exit status, stdout and stderr."""
    import dask.config
    import distributed  # noqa: F401  (its defaults join Dask's config before the config is set)

    from featuremap.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with (
        _environment(env),
        _signal_handlers(),
        _working_directory(cwd or REPO),
        dask.config.set({"distributed.comm.timeouts.connect": connect_timeout}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        _fresh_warnings(),
    ):
        code = main([str(arg) for arg in args])
    return Result(code, out.getvalue(), err.getvalue())


def run_ok(*args: object, cwd: Path | str | None = None) -> Result:
    """:func:`run_cli` for a command that must succeed (exit 0; its stderr shown otherwise)."""
    result = run_cli(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result


def refusal_line(result: Result) -> str:
    """The one line of a refused command: exit 2, exactly one ``featuremap: error:`` line on
    stderr, not an internal error."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("featuremap: error:"), result.stderr
    assert "internal error" not in result.stderr
    return result.stderr
