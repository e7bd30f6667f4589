"""Connecting the cluster commands (``jobs``, ``cancel``, ``logs``) to a running scheduler."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from featuremap.cli._options import make_security, scheduler_address
from featuremap.cli.run import scheduler_warning
from featuremap.errors import InputError

__all__ = ["cluster_connection"]


@contextmanager
def cluster_connection(
    scheduler: str | None,
    *,
    required: bool,
    tls_ca_file: str | None,
    tls_cert: str | None,
    tls_key: str | None,
) -> Iterator[Any]:
    """A client of ``--scheduler`` (else of Dask's configured scheduler), or ``None`` when
    neither is given and the command can do without (``required=False``).

    Raises
    ------
    InputError
        No scheduler given or configured, and ``required``.
    """
    address = scheduler_address(scheduler)
    if address is None:
        if required:
            raise InputError(
                "no scheduler: give --scheduler ADDR or set DASK_SCHEDULER_ADDRESS (or "
                "scheduler-address in Dask's configuration)"
            )
        yield None
        return
    from featuremap.cluster.client import cluster_client

    security = make_security(address, tls_ca_file, tls_cert, tls_key)
    with (
        scheduler_warning(address, security),
        cluster_client(None, address, None, security) as client,
    ):
        yield client
