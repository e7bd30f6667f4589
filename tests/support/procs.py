"""Real processes for the job tests: the ``featuremap`` command, ``dask scheduler`` / ``dask worker``.

Shared by ``jobs/test_cluster.py``, ``jobs/test_failures.py``, ``jobs/test_tls.py``, ``cli/`` and
``deploy/``. Every process runs in its own session, so a test can SIGKILL a whole process tree (a CLI and its
local cluster).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shlex
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
#: :data:`ENV` for a command whose scheduler is meant to be unreachable: Dask retries a refused
#: connection until its connect timeout, so a short one is enough.
UNREACHABLE_ENV = {**ENV, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}


#: Ports :func:`free_port` hands out: below Linux's ephemeral range (32768-60999), where outgoing
#: connections take their local ports, and a range of their own per pytest-xdist worker
#: (``PYTEST_XDIST_WORKER`` = ``gw0``, ``gw1``, ...), so that two test processes never pick the
#: same port and a port probed free is not taken by a connection before its server binds it.
PORTS_PER_WORKER = 1000
FIRST_PORT = 20000
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_next_ports = itertools.cycle(
    range(
        FIRST_PORT + PORTS_PER_WORKER * (_WORKER % 12),
        FIRST_PORT + PORTS_PER_WORKER * (_WORKER % 12 + 1),
    )
)


def fresh_python(code: str, *, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """What ``code`` prints in a fresh interpreter (whose imports and threads no other test has
    touched); a failure raises with its output."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr}")
    return result.stdout


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, from this test process's own range; never
    the same twice in a row (each call moves on through the range)."""
    for _ in range(PORTS_PER_WORKER):
        port = next(_next_ports)
        with socket.socket() as probe, suppress(OSError):
            probe.bind(("127.0.0.1", port))
            return port
    raise RuntimeError(f"no free port in this test process's range from {FIRST_PORT}")


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
    """Terminate, then kill what is left, every process and its group: the last first, one after
    the other (a cluster's workers before its scheduler: a worker terminated while it loses its
    scheduler can hang in its shutdown until it is killed)."""
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        kill_group(process)


@contextmanager
def dask_cluster(
    tmp: Path,
    workers: int = 2,
    tls: Sequence[object] = (),
    scheduler_args: Sequence[object] = (),
) -> Iterator[tuple[str, list]]:
    """``(address, processes)`` of a ``dask scheduler`` and ``workers`` single-threaded
    ``dask worker`` processes on 127.0.0.1; ``tls`` are the TLS flags of both (then tls://),
    ``scheduler_args`` more flags of the scheduler (``--preload MODULE``)."""
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
                "127.0.0.1:0",
                *(["--protocol", "tls"] if tls else []),
                *tls,
                *scheduler_args,
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
                    "127.0.0.1:0",
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


def marked_blocks(store: Path) -> int:
    """Blocks marked done in an output store (0 while it does not exist or is being created)."""
    from featuremap.io import OutputStore

    try:
        return OutputStore.open(str(store)).count_done()
    except (FileNotFoundError, KeyError, ValueError):
        return 0


def age_heartbeat(store: Path, seconds: float) -> None:
    """Make the store's heartbeat ``seconds`` old, as if its owner had been silent that long
    (only while the owner is stopped, so that nothing else writes the job record)."""
    from featuremap.io import OutputStore
    from featuremap.jobs.liveness import remember

    output = OutputStore.open(str(store), "r+")
    output.update_job({"heartbeat": time.time() - seconds})
    # this host has seen that value, unchanged, for ``seconds`` of its own clock
    remember(str(store), output.job["heartbeat"], time.monotonic() - seconds)


def _uts_prefix() -> list[str] | None:
    """A command prefix that runs a program under another hostname (a new UTS namespace), or
    ``None`` where this machine allows no namespace."""
    for prefix in (["unshare", "--uts"], ["unshare", "--user", "--map-root-user", "--uts"]):
        with suppress(OSError, subprocess.SubprocessError):
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
            if probe.returncode == 0:
                return prefix
    return None


UTS_PREFIX = _uts_prefix()


def on_other_host(
    args: Sequence[object], hostname: str = "featuremap-test-other-host"
) -> list[str]:
    """``args`` run as if on another host: in a UTS namespace whose hostname is ``hostname``
    (same network namespace, so 127.0.0.1 is still shared)."""
    if UTS_PREFIX is None:
        raise RuntimeError("no UTS namespace can be made on this machine")
    command = " ".join(shlex.quote(str(arg)) for arg in args)
    return [*UTS_PREFIX, "sh", "-c", f"hostname {shlex.quote(hostname)} && exec {command}"]


@contextmanager
def local_process_client(workers: int, **options: object) -> Iterator[object]:
    """A client of a ``LocalCluster`` of ``workers`` single-threaded worker processes, each under
    its nanny (which restarts it), on loopback; ``options``: more of ``LocalCluster``'s (a
    memory limit)."""
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            **options,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client
