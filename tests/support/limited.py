"""The ``featuremap`` command under resource limits, many commands in one long-lived process.

A hostile-input test must run the command where a bomb cannot take the test process (or the
machine) with it and where a hang is stopped: a process of its own under an address-space limit
(``RLIMIT_AS``) and a time limit. Starting a fresh interpreter per case costs about a second of
start-up and imports, most of such a test's time. :class:`LimitedRunner` pays that once: it starts
one *runner* process under the limits (optionally behind a command prefix: ``unshare --net``,
``setpriv``), which imports featuremap once and then runs one command after another through
:func:`featuremap.cli.main.main`, each as :func:`support.cli.run_cli` runs it (its own stdout,
stderr, working directory, environment, signal handlers, warnings as in a fresh interpreter).
What the runner's process itself writes to its file descriptors 1 and 2 during a command (worker
processes it started, C libraries) is added to that command's stdout / stderr.

What a separate process per case proved still holds:

* a command still running after its time limit (a hang: a FIFO opened for reading) fails the
  test, and the runner (with everything it started: its own session) is killed;
* an exception that escapes ``main`` (a ``MemoryError`` no handler caught) is reported as a fresh
  interpreter reports it, a traceback on stderr and exit status 1, and the runner is replaced;
* a runner that dies during a command (the kernel's OOM killer, a crash) is reported with the
  signal as a negative exit status (as ``subprocess`` does) and its last output, and is replaced.

Requests and replies are JSON lines over two pipes of their own (not stdin / stdout, which the
command may use).
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import REPO
from support.cli import CONNECT_TIMEOUT, Result

__all__ = ["MEMORY_LIMIT", "LimitedResult", "LimitedRunner", "limited_runner", "serve"]

#: The address space a runner may use: a normal command fits well under it, the bombs of the
#: hostile-input tests need gigabytes to terabytes.
MEMORY_LIMIT = 3 << 29  # 1.5 GiB
#: How long a runner may take to start (imports on a loaded machine).
START_SECONDS = 120
#: The runner's environment (:data:`support.procs.ENV`'s): this tree's featuremap, no tracebacks.
RUNNER_ENV = {**os.environ, "PYTHONPATH": str(REPO), "FEATUREMAP_DEBUG": ""}
#: The runner's program: the test helpers on its path (after whatever its PYTHONPATH holds).
RUNNER = (
    f"import sys; sys.path.append({str(REPO / 'tests')!r}); "
    "from support.limited import serve; serve()"
)


@dataclass(frozen=True)
class LimitedResult(Result):
    """A command's exit status, output and the seconds ``main`` took in the runner."""

    seconds: float


def _apply_limit(memory_limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))


class LimitedRunner:
    """A runner process under ``memory_limit`` bytes of address space, started behind
    ``prefix`` (a command that ends by executing its arguments) with the environment ``env``
    (:data:`RUNNER_ENV` by default), restarted when a command hung, crashed it or left it in
    doubt."""

    def __init__(
        self,
        memory_limit: int = MEMORY_LIMIT,
        prefix: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.memory_limit = memory_limit
        self.prefix = list(prefix)
        self.env = dict(env if env is not None else RUNNER_ENV)
        self.starts = 0
        self._process: subprocess.Popen | None = None
        self._requests = -1
        self._replies = -1
        self._pending = b""
        self._output: Any = None
        self._errors: Any = None
        #: What the runner said when it started: its ``memory_limit`` and ``uid``.
        self.ready: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        """The runner's process id (the id of its process group too); ``None`` before a start."""
        return self._process.pid if self._process is not None else None

    # -- the runner process ----------------------------------------------------------------

    def _start(self) -> None:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        # the runner's own stdout and stderr (closed in close())
        self._output = tempfile.TemporaryFile()  # noqa: SIM115
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115
        limit = self.memory_limit
        self._process = subprocess.Popen(
            # -P: the working directory, which each command changes, is not on the import path
            [*self.prefix, sys.executable, "-P", "-c", RUNNER, str(request_read), str(reply_write)],
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=self._errors,
            pass_fds=(request_read, reply_write),
            env=self.env,
            cwd=REPO,
            start_new_session=True,  # one process group: a hang is killed with its children
            preexec_fn=lambda: _apply_limit(limit),
        )
        os.close(request_read)
        os.close(reply_write)
        self._requests, self._replies, self._pending = request_write, reply_read, b""
        self.starts += 1
        try:
            ready = self._reply(time.monotonic() + START_SECONDS)
        except EOFError:
            ready = None
        self.ready = ready or {}
        if ready is None or ready.get("memory_limit") != limit:
            tail = self._tail()
            self.close()
            raise RuntimeError(f"the limited runner did not start ({ready}): {tail}")

    def close(self) -> None:
        """Kill the runner and everything it started (idempotent)."""
        if self._process is not None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=30)
            self._process = None
        for fd in (self._requests, self._replies):
            with suppress(OSError):
                os.close(fd)
        self._requests = self._replies = -1
        for file in (self._output, self._errors):
            if file is not None:
                file.close()
        self._output = self._errors = None

    def _tail(self, size: int = 4000) -> str:
        if self._errors is None:
            return ""
        self._errors.seek(0, os.SEEK_END)
        end = self._errors.tell()
        self._errors.seek(max(0, end - size))
        return self._errors.read().decode(errors="replace")

    def _reply(self, deadline: float) -> dict[str, Any] | None:
        """The next reply; ``None`` at ``deadline``; :class:`EOFError` when the runner closed
        its end (it died: its descriptors close before its exit status can be collected)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._replies, selectors.EVENT_READ)
            while b"\n" not in self._pending:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    return None
                chunk = os.read(self._replies, 1 << 20)
                if not chunk:
                    raise EOFError("the runner closed its replies")
                self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    # -- commands --------------------------------------------------------------------------

    def run(
        self,
        *args: object,
        cwd: Path | str,
        env: Mapping[str, str] | None = None,
        connect_timeout: str = CONNECT_TIMEOUT,
        timeout: float = 60,
    ) -> LimitedResult:
        """Run ``featuremap ARGS`` in the runner, in ``cwd``; ``env`` replaces its whole
        environment for the call (Dask's connect timeout is ``connect_timeout``: Dask reads its
        variables once). Fails the test when the command still runs after ``timeout`` s."""
        if self._process is not None and self._process.poll() is not None:
            self.close()  # died between commands (nothing of this command's doing)
        if self._process is None:
            self._start()
        assert self._process is not None
        argv = [str(arg) for arg in args]
        request = {"args": argv, "cwd": str(cwd), "env": dict(env) if env is not None else None}
        request["connect_timeout"] = connect_timeout
        try:
            os.write(self._requests, json.dumps(request).encode() + b"\n")
            reply = self._reply(time.monotonic() + timeout)
        except (BrokenPipeError, EOFError):  # it died: reported as a process's own death is
            code = self._process.wait(timeout=30)
            tail = self._tail()
            self.close()
            return LimitedResult(code, "", f"runner died (status {code}):\n{tail}", timeout)
        if reply is None:  # a hang: fails the test; the runner and what it started are killed
            self.close()
            import pytest

            pytest.fail(f"featuremap {' '.join(argv)} still ran after {timeout} s")
        if not reply["healthy"]:
            self.close()  # an exception escaped main: start the next command afresh
        return LimitedResult(reply["code"], reply["stdout"], reply["stderr"], reply["seconds"])


@contextmanager
def limited_runner(
    memory_limit: int = MEMORY_LIMIT,
    prefix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[LimitedRunner]:
    """A :class:`LimitedRunner`, closed afterwards (for a module-scoped fixture)."""
    runner = LimitedRunner(memory_limit, prefix, env)
    try:
        yield runner
    finally:
        runner.close()


# -- the runner's side -----------------------------------------------------------------------


def _fd_size(fd: int) -> int:
    try:
        return os.fstat(fd).st_size
    except OSError:
        return 0


def _written_since(fd: int, offset: int) -> str:
    """What went to file descriptor ``fd`` (a regular file) from ``offset`` on."""
    size = _fd_size(fd)
    return os.pread(fd, size - offset, offset).decode(errors="replace") if size > offset else ""


def _execute(request: dict[str, Any]) -> dict[str, Any]:
    """Run one command as :func:`support.cli.run_cli` does; an exception that escapes ``main``
    is what a fresh interpreter shows: its traceback on stderr, exit status 1."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    import dask.config

    from featuremap.cli.main import main
    from support import cli

    out, err = io.StringIO(), io.StringIO()
    before = {fd: _fd_size(fd) for fd in (1, 2)}
    healthy = True
    started = time.monotonic()
    with (
        cli._environment(request["env"]),
        cli._signal_handlers(),
        cli._working_directory(request["cwd"]),
        dask.config.set({"distributed.comm.timeouts.connect": request["connect_timeout"]}),
        redirect_stdout(out),
        redirect_stderr(err),
        cli._fresh_warnings(),
    ):
        try:
            code = main(request["args"])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:  # as an interpreter would: shown, exit status 1
            traceback.print_exc()
            code, healthy = 1, False
    seconds = time.monotonic() - started
    return {
        "code": code,
        "stdout": out.getvalue() + _written_since(1, before[1]),
        "stderr": err.getvalue() + _written_since(2, before[2]),
        "seconds": seconds,
        "healthy": healthy,
    }


def serve() -> None:
    """The runner: the request and reply pipes' descriptors are ``sys.argv[1:3]``; says it is
    ready (with its address-space limit), then answers each request line with a reply line."""
    import distributed  # noqa: F401  (the imports a command needs, paid once)

    import featuremap.cli.main  # noqa: F401

    requests = os.fdopen(int(sys.argv[1]), "rb")
    replies = os.fdopen(int(sys.argv[2]), "wb", buffering=0)
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    replies.write(json.dumps({"memory_limit": limit, "uid": os.geteuid()}).encode() + b"\n")
    for line in requests:
        reply = _execute(json.loads(line))
        replies.write(json.dumps(reply).encode() + b"\n")
        if not reply["healthy"]:
            return
