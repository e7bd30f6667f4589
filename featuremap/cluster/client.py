"""Where a job's blocks run: a given client, a scheduler address (plain or TLS), or a local cluster.

Dask executes what its scheduler sends, so anyone who can reach a plain ``tcp://`` scheduler can
run code on the workers: a connection to one on another host is warned about
(:func:`insecure_scheduler_message`); ``tls://`` with Dask's own option names authenticates both
ends.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from featuremap._validation import parse_int
from featuremap.errors import InputError, JobError, error_line, spoken

__all__ = [
    "ENCRYPTED_SCHEMES",
    "LOOPBACK",
    "PLAINTEXT_SCHEMES",
    "THREADS_MAX_BLOCKS",
    "UnauthenticatedSchedulerWarning",
    "cluster_client",
    "configured_scheduler",
    "configured_security",
    "insecure_scheduler_message",
    "is_loopback",
    "local_processes",
    "runs_inline",
    "scheme_of",
    "start_local_cluster",
]

#: Where a local cluster listens.
LOOPBACK = "127.0.0.1"


class UnauthenticatedSchedulerWarning(UserWarning):
    """A job is sent over plain TCP to a scheduler that is not on this machine."""


#: Tasks the local cluster's dashboard remembers for its task stream (Dask's default is 100 000
#: records, held by the scheduler, which is this process): enough to watch a job, no more.
TASK_STREAM = 10_000

#: Schemes that carry Dask's protocol in plain text, and those that encrypt it.
PLAINTEXT_SCHEMES = ("tcp", "ws", "ucx")
ENCRYPTED_SCHEMES = ("tls", "wss")


def scheme_of(address: str) -> str:
    """The scheme of a scheduler address (a bare ``host:port`` is ``tcp``)."""
    return address.split("://", 1)[0].lower() if "://" in address else "tcp"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback: ``localhost``, any of 127.0.0.0/8 (short
    forms such as ``127.1`` included) or ``::1``. Other names are not resolved."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        return socket.inet_aton(host)[0] == 127  # the short IPv4 forms inet_aton accepts
    except OSError:
        return False


def configured_scheduler() -> str | None:
    """The scheduler address in Dask's configuration (``DASK_SCHEDULER_ADDRESS``, or
    ``scheduler-address`` in a Dask YAML file), or ``None``."""
    import dask.config

    address = dask.config.get("scheduler-address", None)
    return str(address) if address else None


def configured_security() -> Any:
    """A ``distributed.security.Security`` from Dask's TLS configuration
    (``distributed.comm.tls.ca-file``, ``.client.cert``, ``.client.key``; e.g.
    ``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``), or ``None`` when it names no CA file."""
    import dask.config

    if not dask.config.get("distributed.comm.tls.ca-file", None):
        return None
    from distributed.security import Security

    return Security(require_encryption=True)  # reads the files from Dask's configuration


def insecure_scheduler_message(scheduler: str, security: Any = None) -> str | None:
    """A one-line warning when ``scheduler`` is reached in plain text from another host.

    Dask executes what its scheduler sends, so anyone who can reach a plain-text scheduler
    (``tcp://``, ``ws://``, a bare ``host:port``) can run code on the workers; loopback
    addresses stay on this machine and are not warned about.
    """
    if security is not None and getattr(security, "require_encryption", False):
        return None
    scheme = scheme_of(scheduler)
    if scheme not in PLAINTEXT_SCHEMES:
        return None
    parts = urlsplit(scheduler if "://" in scheduler else f"tcp://{scheduler}")
    if is_loopback(parts.hostname or ""):
        return None
    return (
        f"the connection to {scheduler} is unauthenticated and unencrypted: anyone who can reach "
        "it can run code on the workers; use tls:// (or wss://) with "
        + spoken("--tls-ca-file/--tls-cert/--tls-key", "security=distributed.Security(...)")
    )


def _check_handshake(scheduler: str, security: Any, timeout: object) -> None:
    """Connect to ``scheduler`` and wait for its handshake, all within ``timeout``.

    Dask bounds the TCP connect by its connect timeout but then waits for the peer's handshake
    without one (``distributed.comm.core.connect``), and ``Client(timeout=...)`` does not cover
    that wait: a port that accepts and never speaks would hold the command forever. This probe
    bounds both; a silent peer is a :class:`TimeoutError`.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from dask.utils import parse_timedelta
    from distributed.comm import connect

    seconds = parse_timedelta(timeout, default="seconds")
    arguments = security.get_connection_args("client") if security is not None else {}

    async def handshake() -> None:
        comm = await connect(scheduler, timeout=seconds, **arguments)
        await comm.close()

    async def bounded() -> None:
        try:
            await asyncio.wait_for(handshake(), seconds)
        except TimeoutError:
            raise TimeoutError(
                f"no Dask handshake within {seconds:g} s (the port accepts connections but does "
                "not speak Dask's protocol)"
            ) from None

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case: no event loop in this thread
        asyncio.run(bounded())
        return
    # called from a running event loop (a notebook): probe on a thread of its own
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, bounded()).result()


def _connect(scheduler: str, security: Any) -> Any:
    import dask.config
    from distributed import Client

    message = insecure_scheduler_message(scheduler, security)
    if message is not None:
        warnings.warn(message, UnauthenticatedSchedulerWarning, stacklevel=5)
    timeout = dask.config.get("distributed.comm.timeouts.connect")
    try:  # Dask's connect timeout (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT), 30 s by default
        _check_handshake(scheduler, security, timeout)
        return Client(scheduler, security=security, timeout=timeout)
    except (OSError, TimeoutError) as error:
        raise JobError(
            f"cannot connect to the scheduler {scheduler!r}: {error_line(error)}; check that it "
            "runs, the address and the TLS options"
        ) from None
    except ValueError as error:  # a malformed address or TLS setting
        raise InputError(
            f"cannot use the scheduler address {scheduler!r}: {error_line(error)}"
        ) from None


@contextmanager
def _sigint_ignored_by_children() -> Iterator[None]:
    """Start processes that ignore SIGINT: a Ctrl-C reaches the whole foreground process group,
    and the local cluster's workers must leave it to the process that owns them, which stops
    the job, records it and closes the cluster (workers killed by it would print tracebacks
    and leak semaphores). Spawned Python processes keep an inherited SIG_IGN."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


#: Block tasks up to which a local cluster runs threads in this process rather than worker
#: processes (:func:`local_processes`). Worker processes cost seconds before the first block
#: (each imports Dask, NumPy and featuremap) and at close; threads start in 0.05 s and share
#: this process's imports. Measured on the 2-core host (load 14-18, default pipeline, `run`
#: wall / CPU seconds): 4 blocks 8.8-12.9 s / 1.7-1.9 against 22-25 s / 4.4-4.6 with
#: processes; 16 blocks 23-24 s / 3.2-4.6 against 34-53 s / 6.2-7.5. Past a few blocks per
#: core the start is paid back and processes keep what threads lose: separate interpreters (no
#: shared GIL for Zarr's Python-level work), a memory limit per worker, and a crash that loses
#: one worker rather than the job's own process.
THREADS_MAX_BLOCKS = 16


def local_processes(processes: bool | None, blocks: int) -> bool:
    """Whether a local cluster for a job of ``blocks`` block tasks runs worker processes:
    ``processes`` when given, else processes only past :data:`THREADS_MAX_BLOCKS` blocks."""
    if processes is not None:
        return bool(processes)
    return blocks > THREADS_MAX_BLOCKS


def runs_inline(processes: bool | None, dashboard: str | None, blocks: int) -> bool:
    """Whether a local job of ``blocks`` block tasks runs on threads of this process without
    Dask's scheduler (:class:`featuremap.cluster.inline.InlineCluster`): when nothing asks for
    a cluster (``processes`` not chosen, no ``dashboard`` address) and the job is small enough
    for threads (:func:`local_processes`)."""
    return processes is None and dashboard is None and not local_processes(None, blocks)


def start_local_cluster(
    workers: int | None,
    processes: bool,
    dashboard: str | None,
    *,
    port: int = 0,
    preload: tuple[str, ...] = (),
    scheduler_preload: tuple[str, ...] = (),
) -> Any:
    """A ``distributed.LocalCluster`` on loopback: ``workers`` single-threaded worker processes
    (default one per core), or with ``processes=False`` one worker of ``workers`` threads in
    this process; its scheduler on ``port`` (0: any free port) running the modules
    ``scheduler_preload`` (``dask scheduler --preload``), its workers importing the modules
    ``preload`` as they start.

    Worker processes are single-threaded because blocks run BLAS kernels that would fight over
    cores in threads; a threaded worker's block tasks keep BLAS single-threaded themselves
    (:func:`featuremap.engine.kernels.task_threads`). Scheduler, workers and dashboard listen on
    loopback only unless a dashboard address is given on purpose.
    """
    import dask.config
    from distributed import LocalCluster

    count = workers or os.cpu_count() or 1
    with (
        _sigint_ignored_by_children(),
        dask.config.set({"distributed.scheduler.dashboard.tasks.task-stream-length": TASK_STREAM}),
    ):
        return LocalCluster(
            n_workers=count if processes else 1,
            threads_per_worker=1 if processes else count,
            processes=processes,
            host=LOOPBACK,
            protocol="tcp://",
            scheduler_port=port,
            dashboard_address=dashboard or f"{LOOPBACK}:0",
            preload=list(preload),
            scheduler_kwargs={"preload": list(scheduler_preload)} if scheduler_preload else None,
        )


@contextmanager
def _single_threaded_blas(threaded: bool) -> Iterator[None]:
    """BLAS at one thread in this process while a threaded local cluster runs in it, as a
    worker process's nanny sets it (``OPENBLAS_NUM_THREADS=1``): block tasks then compute
    exactly as on worker processes, whatever runs beside them (measured: without it, blocks of
    two concurrent tasks differed from a process worker's in float32 rounding)."""
    if not threaded:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@contextmanager
def cluster_client(
    client: Any,
    scheduler: str | None,
    workers: int | None,
    security: Any,
    *,
    processes: bool = True,
    dashboard: str | None = None,
    on_dashboard: Callable[[str], None] | None = None,
    preload: Sequence[str] = (),
    inline: bool = False,
) -> Iterator[Any]:
    """The given client, one connected to ``scheduler``, or a fresh local cluster's (closed after).

    A local cluster runs ``workers`` worker processes, or with ``processes=False`` one worker
    of ``workers`` threads inside this process (:func:`local_processes` chooses for a job), or
    with ``inline=True`` ``workers`` threads of this process without a scheduler or dashboard
    (:class:`featuremap.cluster.inline.InlineCluster`; :func:`runs_inline` chooses). It
    binds 127.0.0.1; its dashboard too unless ``dashboard`` gives another address (e.g.
    ``:8787`` to open it to the network, deliberately); its scheduler runs the ``preload``
    modules (``dask scheduler --preload``). ``on_dashboard(link)`` is told the
    dashboard's address when the cluster is up, or connected.
    """
    if client is not None and scheduler is not None:
        raise InputError("give either a client or a scheduler address, not both")
    if workers is not None and (client is not None or scheduler is not None):
        raise InputError(
            "workers sizes a local cluster; it cannot be combined with a scheduler or client"
        )
    if workers is not None:
        parse_int("workers", workers, minimum=1)
    if client is not None:
        yield client
        return
    if scheduler is not None:
        with _connect(scheduler, security) as connected:
            if on_dashboard is not None and connected.dashboard_link:
                on_dashboard(connected.dashboard_link)
            yield connected
        return
    if inline:
        from featuremap.cluster.inline import inline_cluster

        with _single_threaded_blas(threaded=True), inline_cluster(workers) as threads:
            yield threads
        return
    from distributed import Client

    with (
        _single_threaded_blas(threaded=not processes),
        start_local_cluster(
            workers, processes, dashboard, scheduler_preload=tuple(preload)
        ) as cluster,
        Client(cluster) as local,
    ):
        if on_dashboard is not None:
            on_dashboard(local.dashboard_link)
        yield local
