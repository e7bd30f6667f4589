"""The limited runner of the hostile-input tests (:mod:`support.limited`) still fails a case the
way a process of its own per case did: a hang is a failure, a runner that dies is reported, and
either way the next command gets a fresh runner under the same limit."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator

import pytest
from support.limited import MEMORY_LIMIT, LimitedRunner, _execute, limited_runner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runner() -> Iterator[LimitedRunner]:
    with limited_runner() as started:
        yield started


@pytest.fixture
def mute_scheduler() -> Iterator[str]:
    """An address whose connections the kernel accepts (the backlog) and nobody ever answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"


def _hang(runner: LimitedRunner, scheduler: str, timeout: float, tmp_path) -> object:
    """A command that waits a minute for a handshake (the connect timeout): a hang."""
    return runner.run(
        "jobs", "--scheduler", scheduler, cwd=tmp_path, connect_timeout="60s", timeout=timeout
    )


def test_commands_run_under_the_memory_limit_in_one_process(runner, tmp_path):
    first = runner.run("--version", cwd=tmp_path)
    second = runner.run("explain", "missing.yaml", cwd=tmp_path)
    assert runner.ready["memory_limit"] == MEMORY_LIMIT
    assert first.returncode == 0
    assert first.stdout.startswith("featuremap, version")
    assert second.returncode == 2
    assert second.stderr.startswith("featuremap: error: pipeline file 'missing.yaml'")
    assert runner.starts == 1


def test_a_hang_fails_the_test_and_the_next_command_gets_a_new_runner(
    runner, mute_scheduler, tmp_path
):
    starts, pid = runner.starts, runner.pid
    with pytest.raises(pytest.fail.Exception, match=r"featuremap jobs .* still ran after 1 s"):
        _hang(runner, mute_scheduler, 1, tmp_path)
    assert runner.pid is None
    with pytest.raises(ProcessLookupError):  # killed, not left behind
        os.kill(pid or 0, 0)
    assert runner.run("--version", cwd=tmp_path).returncode == 0
    assert runner.starts == starts + 1


def test_a_runner_that_dies_is_reported_and_replaced(runner, mute_scheduler, tmp_path):
    runner.run("--version", cwd=tmp_path)  # started
    starts, pid = runner.starts, runner.pid
    assert pid is not None
    killer = threading.Timer(0.5, os.killpg, (pid, signal.SIGKILL))
    killer.start()
    result = _hang(runner, mute_scheduler, 30, tmp_path)
    killer.join()
    assert result.returncode == -signal.SIGKILL
    assert result.stderr.startswith("runner died")
    assert runner.run("--version", cwd=tmp_path).returncode == 0
    assert runner.starts == starts + 1


def test_an_exception_escaping_main_is_a_traceback_and_exit_1(monkeypatch, tmp_path):
    """What the runner does with an exception that escapes ``main`` (a ``MemoryError`` main
    did not catch), here in this process: what a fresh interpreter shows, and not healthy (the
    runner then exits and the next command gets a new one)."""
    import featuremap.cli.main

    def bomb(argv: object) -> int:
        raise MemoryError("a bomb went off")

    monkeypatch.setattr(featuremap.cli.main, "main", bomb)
    reply = _execute({"args": ["run"], "cwd": str(tmp_path), "env": None, "connect_timeout": "1s"})
    assert reply["code"] == 1
    assert reply["healthy"] is False
    assert "Traceback" in reply["stderr"]
    assert reply["stderr"].rstrip().endswith("MemoryError: a bomb went off")
