"""Streaming a job's blocks to where they run, at most a window of them in flight.

On a Dask cluster (:func:`_stream_on_dask`) the blocks are Dask tasks that depend on one task
holding the job's shared data (:func:`share_job`), submitted a batch at a time under the job's
fair share of the cluster (:mod:`.share`). On an :class:`~featuremap.cluster.inline.InlineCluster`
(a small local job, :func:`_stream_inline`) they are calls on the pool's threads with the job
itself as argument. Either way a block task reads, computes and writes its own block
(:func:`featuremap.jobs.blocks.run_block`) and returns its statistics, which
:func:`stream_blocks` hands to ``on_block`` in this process as blocks finish.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from featuremap.cluster.inline import InlineCluster
from featuremap.io import Block, FeatureStats
from featuremap.jobs.blocks import BlockJob, run_block
from featuremap.jobs.registry import task_prefix
from featuremap.jobs.share import TASKS_PER_THREAD, FairShare, task_priority

__all__ = ["RETRIES", "OnBlock", "block_key", "block_threads", "share_job", "stream_blocks"]

#: Extra attempts for a block task that raised (worker loss is retried by Dask on its own).
RETRIES = 2
#: Told each finished block and its statistics, in this process.
OnBlock = Callable[[Block, FeatureStats], None]


def block_threads(client: Any, blocks: int) -> int:
    """Threads one block task may use: its worker's threads shared among the blocks that run
    on it at once (a one-block job on a 2-thread worker tiles its block on both; a job with a
    block for every thread runs each on one, BLAS single-threaded)."""
    per_worker = max(client.nthreads().values(), default=1) if hasattr(client, "nthreads") else 1
    return max(1, per_worker // max(1, min(blocks, per_worker)))


def stream_blocks(
    client: Any,
    job: BlockJob,
    todo: Iterator[Block],
    on_block: OnBlock,
    check: Callable[[], None],
    *,
    priority: int = 0,
    restrictions: Mapping[str, Any] | None = None,
) -> None:
    """Run ``job``'s blocks ``todo`` on ``client`` (a ``distributed.Client`` or an
    :class:`~featuremap.cluster.inline.InlineCluster`), telling ``on_block(block, stats)`` as
    they finish; ``check()`` after each, which raises to stop the job (it was fenced).

    Raises the first error of a block task past its :data:`RETRIES`; the job's tasks not yet
    started are dropped then (running ones go on to their fencing check).
    """
    if isinstance(client, InlineCluster):
        _stream_inline(client, job, todo, on_block, check)
    else:
        _stream_on_dask(client, job, todo, on_block, check, priority, restrictions or {})


def _attempts(job: BlockJob, block: Block) -> FeatureStats:
    """:func:`run_block` retried :data:`RETRIES` times when it raises, as Dask's ``retries``."""
    for _ in range(RETRIES):
        try:
            return run_block(job, block)
        except Exception:  # noqa: BLE001 -- the last attempt below raises it
            continue
    return run_block(job, block)


def _stream_inline(
    cluster: InlineCluster,
    job: BlockJob,
    todo: Iterator[Block],
    on_block: OnBlock,
    check: Callable[[], None],
) -> None:
    """The blocks on ``cluster``'s threads, :data:`TASKS_PER_THREAD` per thread queued at
    most (the job's blocks are generated lazily, so a resumed job of many blocks never holds
    them all)."""
    window = TASKS_PER_THREAD * cluster.threads
    running: dict[Future[FeatureStats], Block] = {}

    def fill() -> None:
        for block in itertools.islice(todo, window - len(running)):
            running[cluster.submit(_attempts, job, block)] = block

    fill()
    try:
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                on_block(running.pop(future), future.result())
                check()
            fill()
    finally:
        for future in running:
            future.cancel()


def _stream_on_dask(
    client: Any,
    job: BlockJob,
    todo: Iterator[Block],
    on_block: OnBlock,
    check: Callable[[], None],
    priority: int,
    restrictions: Mapping[str, Any],
) -> None:
    """Send every block not yet done through a bounded window; ``on_block(block, stats)`` for
    the blocks finished, a batch at a time (its block's statistics, a few numbers a feature, are
    all that travels back: one ``gather`` per batch, never a round trip per block, and never
    ``as_completed(with_results=True)``, whose background fetches log a traceback on the
    terminal when Ctrl-C closes the connection under them).

    The job keeps at most its share of the cluster's window in flight
    (:class:`featuremap.jobs.share.FairShare`, re-read at refills at most every second) and
    refills it once half of it is done, one ``client.map`` each: every submission is one graph update for the
    scheduler and one record that its spans keep for the cluster's lifetime, so batches make
    both a fraction of the blocks while the other half keeps the workers busy.
    """
    from distributed import as_completed

    shared = share_job(client, job, priority)
    blocks: dict[str, tuple[int, ...]] = {}

    def submit(count: int) -> list[Any]:
        batch = list(itertools.islice(todo, count))
        if not batch:
            return []
        futures = client.map(
            run_block,
            [shared] * len(batch),
            batch,
            key=[block_key(job.token, block) for block in batch],
            retries=RETRIES,
            priority=task_priority(priority),  # first in, first out between jobs: see there
            **restrictions,
        )
        blocks.update(zip((future.key for future in futures), batch, strict=True))
        return list(futures)

    fair_share = FairShare(client, job.token, priority)
    share = fair_share()
    pending = as_completed(submit(share))
    finished: list[Any] = []
    try:
        for future in pending:
            if future.status != "finished":
                future.result()  # raises the task's error (past its retries), or its cancelling
            finished.append(future)
            check()
            in_flight = pending.count()
            if (in_flight <= share // 2 and len(finished) >= share // 2) or in_flight == 0:
                for done, stats in zip(finished, client.gather(finished), strict=True):
                    on_block(blocks.pop(done.key), stats)
                finished.clear()
                share = fair_share()  # jobs start and end meanwhile
                pending.update(submit(max(0, share - in_flight)))  # the share may have shrunk
    finally:
        in_flight_futures = list(pending.futures)
        pending.clear()
        # what the job leaves behind on the cluster goes with it: its queued and running tasks
        # (a failed one stays on the scheduler as long as a future holds it) and its weights
        client.cancel([*in_flight_futures, *finished, shared], force=True)


def _job_data(job: BlockJob) -> BlockJob:
    """The task whose result is the job's shared data (see :func:`share_job`)."""
    return job


def share_job(client: Any, job: BlockJob, priority: int = 0) -> Any:
    """The job's shared data (layers, plan) on the cluster: a future every block task depends on.

    It is a *task* that returns the job, not scattered data: the scheduler keeps the task's
    definition, so when the only worker holding the result dies (killed by its nanny over
    memory, SIGKILL, a lost host), Dask computes it again on a worker that lives and the blocks
    go on -- scattered data would be lost for good, and every later block cancelled with it.
    Workers fetch it from one another as their first block needs it, like a broadcast. The
    cost: the scheduler holds the pickled job (its weights) while the job runs, and it travels
    once to the scheduler and once to the first worker (``docs/scaling.md``).
    """
    import warnings

    with warnings.catch_warnings():
        # distributed's advice to scatter large arguments is exactly what this must not do
        warnings.filterwarnings("ignore", message=".*[Ll]arge.*graph.*")
        return client.submit(
            _job_data, job, key=f"{task_prefix(job.token)}job", pure=False, priority=priority + 1
        )


def block_key(job: str, block: tuple[int, ...]) -> str:
    """The Dask key of job ``job``'s task for ``block``: ``featuremap_<id>-block-<i.j...>``."""
    return f"{task_prefix(job)}block-{'.'.join(map(str, block))}"
