"""Where a job's blocks run: a given client, a scheduler address (plain or TLS), or a local cluster.

Dask executes what its scheduler sends, so anyone who can reach a plain ``tcp://`` scheduler can
run code on the workers: a connection to one on another host is warned about
(:func:`insecure_scheduler_message`); ``tls://`` with Dask's own option names authenticates both
ends.
"""

from __future__ import annotations

import ipaddress
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from featuremap._validation import parse_int
from featuremap.errors import InputError, JobError, error_line

__all__ = ["UnauthenticatedSchedulerWarning", "cluster_client", "insecure_scheduler_message"]


class UnauthenticatedSchedulerWarning(UserWarning):
    """A job is sent over plain TCP to a scheduler that is not on this machine."""


def insecure_scheduler_message(scheduler: str, security: Any = None) -> str | None:
    """A one-line warning when ``scheduler`` is reached unauthenticated from another host.

    Loopback addresses stay on this machine and are not warned about.
    """
    if security is not None and getattr(security, "require_encryption", False):
        return None
    parts = urlsplit(scheduler if "://" in scheduler else f"tcp://{scheduler}")
    if parts.scheme != "tcp":
        return None
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        loopback = False
    if loopback:
        return None
    return (
        f"the connection to {scheduler} is unauthenticated and unencrypted: anyone who can reach "
        "it can run code on the workers; use tls:// with --tls-ca-file/--tls-cert/--tls-key"
    )


def _connect(scheduler: str, security: Any) -> Any:
    import dask.config
    from distributed import Client

    message = insecure_scheduler_message(scheduler, security)
    if message is not None:
        warnings.warn(message, UnauthenticatedSchedulerWarning, stacklevel=5)
    try:  # Dask's connect timeout (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT), 30 s by default
        return Client(
            scheduler,
            security=security,
            timeout=dask.config.get("distributed.comm.timeouts.connect"),
        )
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
def cluster_client(
    client: Any, scheduler: str | None, workers: int | None, security: Any
) -> Iterator[Any]:
    """The given client, one connected to ``scheduler``, or a fresh local cluster's (closed after)."""
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
            yield connected
        return
    from distributed import Client, LocalCluster

    # one single-threaded worker process per core: blocks run BLAS/oneDNN kernels that would
    # fight over cores in threads
    with (
        LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as local,
    ):
        yield local
