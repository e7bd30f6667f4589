"""Threads in this process without Dask's scheduler: where a small job runs by default.

Importing ``distributed`` costs more than a small job's blocks (0.13-0.16 s of a tiny job's
0.6 s on the 2-core host, and its in-process cluster 0.03 s more to start and close), and
a job of a few blocks gets nothing from it: no other process to ship tasks to, no memory limit
to enforce, a dashboard nobody opens before the job is over. An :class:`InlineCluster` is a pool
of threads plus the few things a job asks of its cluster besides running blocks -- its threads,
running a function "on every worker" (this process), the registry's metadata -- so that job
code written against a ``distributed.Client`` runs unchanged on it; the block stream itself
(:func:`featuremap.jobs.execute.execute_job`) submits to its pool directly.

Blocks compute exactly as on a worker: BLAS runs single-threaded in each task, and a block's
own threads are its share of the pool (:func:`featuremap.jobs.execute.task_threads`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

__all__ = ["InlineCluster", "inline_cluster"]

#: What :meth:`InlineCluster.run` and :meth:`InlineCluster.nthreads` call its one "worker".
ADDRESS = "inline"


class InlineCluster:
    """A pool of ``threads`` threads in this process, with the parts of ``distributed.Client``
    a job uses besides its block tasks.

    ``status`` is ``"running"`` until :meth:`close`; ``dashboard_link`` is ``None`` (there is
    no dashboard).
    """

    dashboard_link: str | None = None

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.status = "running"
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="featuremap-block")
        self._metadata: dict[str, Any] = {}

    def submit(self, function: Callable[..., Any], *arguments: Any) -> Future[Any]:
        """``function(*arguments)`` on one of the pool's threads."""
        return self._pool.submit(function, *arguments)

    def nthreads(self) -> dict[str, int]:
        """Threads per worker, as ``Client.nthreads``: this process's pool."""
        return {ADDRESS: self.threads}

    def run(self, function: Callable[..., Any], *arguments: Any) -> dict[str, Any]:
        """``function(*arguments)`` on every worker, as ``Client.run``: here, once."""
        return {ADDRESS: function(*arguments)}

    def set_metadata(self, keys: Sequence[str], value: Any) -> None:
        """Store ``value`` under the key path ``keys``, as ``Client.set_metadata``."""
        *parents, last = keys
        node = self._metadata
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    def get_metadata(self, keys: Sequence[str], default: Any = None) -> Any:
        """The value under the key path ``keys`` (``default`` when absent), as
        ``Client.get_metadata``."""
        node: Any = self._metadata
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    def close(self, wait: bool = True) -> None:
        """Drop the tasks not started; wait for the running ones unless ``wait`` is false (they
        then end on their own, as a cluster's running tasks do when their job stops: a block
        one of them writes gets no done-marker, so ``--resume`` computes it again, and once
        another job owns the store the fencing check stops it from writing at all)."""
        self.status = "closed"
        self._pool.shutdown(wait=wait, cancel_futures=True)


@contextmanager
def inline_cluster(threads: int | None) -> Iterator[InlineCluster]:
    """An :class:`InlineCluster` of ``threads`` threads (default: one per core), closed after;
    on an error or an interrupt without waiting for the blocks still running (a Ctrl-C must
    not wait for a block of minutes)."""
    cluster = InlineCluster(threads or os.cpu_count() or 1)
    try:
        yield cluster
    except BaseException:
        cluster.close(wait=False)
        raise
    cluster.close()
