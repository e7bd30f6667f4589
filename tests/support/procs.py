"""Real processes for the job tests: the ``featuremap`` command, ``dask scheduler`` / ``dask worker``.

Shared by ``jobs/test_cluster.py``, ``jobs/test_failures.py``, ``jobs/test_tls.py``, ``cli/`` and
``deploy/``. Every process runs in its own session, so a test can SIGKILL a whole process tree (a CLI and its
local cluster).
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from support import REPO

DASK = str(Path(sys.executable).with_name("dask"))
#: Environment of every child: this tree's featuremap, tracebacks off, short connect timeouts.
ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO),
    "FEATUREMAP_DEBUG": "",
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "5s",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def featuremap(
    *args: object, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``featuremap ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "featuremap.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env or ENV,
        timeout=timeout,
    )


def start(args: Sequence[object], log: Path) -> subprocess.Popen:
    """Start a process in a new session (its own process group), output to ``log``."""
    return subprocess.Popen(
        list(map(str, args)),
        cwd=REPO,
        env=ENV,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_featuremap(*args: object, log: Path) -> subprocess.Popen:
    return start([sys.executable, "-m", "featuremap.cli.main", *args], log)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a process and everything it started (its process group)."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def stop(processes: Sequence[subprocess.Popen]) -> None:
    """Terminate, then kill what is left, every process and its group."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        kill_group(process)


@contextmanager
def dask_cluster(
    tmp: Path, workers: int = 2, tls: Sequence[object] = ()
) -> Iterator[tuple[str, list]]:
    """``(address, processes)`` of a ``dask scheduler`` and ``workers`` single-threaded
    ``dask worker`` processes on 127.0.0.1; ``tls`` are the TLS flags of both (then tls://)."""
    port = free_port()
    address = f"{'tls' if tls else 'tcp'}://127.0.0.1:{port}"
    processes = [
        start(
            [
                DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                port,
                "--dashboard-address",
                ":0",
                *(["--protocol", "tls"] if tls else []),
                *tls,
            ],
            tmp / f"scheduler-{port}.log",
        )
    ]
    try:
        processes += [
            start(
                [
                    DASK,
                    "worker",
                    address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--host",
                    "127.0.0.1",
                    "--dashboard-address",
                    ":0",
                    *tls,
                ],
                tmp / f"worker-{port}-{i}.log",
            )
            for i in range(workers)
        ]
        yield address, processes
    finally:
        stop(processes)


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative path (folders listed too): a store's bytes."""
    digest = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        digest[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return digest


def dead_pid() -> int:
    """The process id of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
