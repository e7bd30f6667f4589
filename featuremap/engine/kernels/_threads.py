"""Run independent tiles of one call on Python threads, with BLAS single-threaded meanwhile.

Why not let BLAS thread each GEMM: a tiled convolution makes hundreds of small GEMM calls with
a single-threaded patch copy between them. OpenBLAS workers spin between calls and take the
core that the copy needs; on a busy machine a call then waits for descheduled workers. Measured
on the 2-core development machine under load (C=1 J=16 k=7 2048^2): 0.30 s with 2 BLAS threads,
0.055-0.088 s with 2 Python threads each running single-threaded BLAS on its own tiles (copy
and GEMM both in parallel, no spinning), the way PyTorch runs its own tiles.

The number of threads is the number BLAS would have used (``OPENBLAS_NUM_THREADS``, Dask's
nanny sets 1 in workers: then everything runs inline). The calling thread takes tiles too; the
others come from a pool of its own, kept between calls (:func:`_helpers`). The single-thread limit is reference
counted so that concurrent calls restore the original BLAS setting only when the last ends;
a call made while another one holds the limit runs inline.

A block task on a threaded worker (a small job's local cluster runs its worker as threads of
the job's own process) says how many threads it may use with :func:`task_threads`: one per
task when the job has a block for every worker thread, so BLAS never threads under a task that
already has a core of its own; more when there are fewer blocks than threads. BLAS stays
single-threaded while any such task runs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["blas_threads", "run_tiles", "task_threads"]

Item = TypeVar("Item")

_inside_worker = threading.local()
_limit_lock = threading.Lock()
_limit_users = 0
_limiter: Any = None
_controller: Any = None


def _blas() -> Any:
    """threadpoolctl's controller of the BLAS libraries loaded (numpy's OpenBLAS), made once."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


def blas_threads() -> int:
    """Threads a BLAS call would use now; 1 inside a tile worker, a task's own budget inside
    :func:`task_threads`."""
    if getattr(_inside_worker, "active", False):
        return 1
    budget: int | None = getattr(_inside_worker, "budget", None)
    if budget is not None:
        return budget
    return max((library.num_threads for library in _blas().lib_controllers), default=1)


def _release_control() -> None:
    """Let the next thread set OpenBLAS's threads. threadpoolctl (3.6 on) lets only the first
    thread that set a pthreads OpenBLAS's limit change it again and silently ignores the others,
    so a block task on a Dask worker thread kept BLAS at 2 threads whenever another thread (the
    planning thread's sample) had set a limit before: two tasks then ran multi-threaded GEMMs
    side by side, oversubscribed, and summed in another order (features 1 ulp apart from run to
    run). This module's limit is process-wide and changed only under ``_limit_lock``, so the
    thread that sets or restores it may take control for that moment."""
    from threadpoolctl import OpenBLASController

    clear = getattr(OpenBLASController, "clear_controlling_thread", None)  # threadpoolctl >= 3.6
    if clear is not None:
        clear(force=True)


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    global _limit_users, _limiter
    with _limit_lock:
        if _limit_users == 0:
            _release_control()
            _limiter = _blas().limit(limits=1)
            _release_control()
        _limit_users += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                _release_control()
                _limiter.restore_original_limits()
                _release_control()
                _limiter = None


@contextmanager
def task_threads(threads: int) -> Iterator[None]:
    """Run the calls made inside on at most ``threads`` threads (tiles, FFT workers) of this
    thread, with BLAS single-threaded meanwhile (reference counted, shared with concurrent
    tasks and tiled calls)."""
    previous = getattr(_inside_worker, "budget", None)
    _inside_worker.budget = max(1, threads)
    try:
        with _single_threaded_blas():
            yield
    finally:
        _inside_worker.budget = previous


def run_tiles(
    work: Callable[[Item], None], items: Iterable[Item], *, parallel: bool = True
) -> None:
    """Call ``work(item)`` for every item, on as many threads as BLAS would use.

    Items are handed out one at a time (the fastest thread takes the next), so a thread slowed
    by other processes does not hold up the call; the calling thread is one of the threads.
    ``work`` must write disjoint outputs; where it raises, the call raises once every item has
    been taken.
    ``parallel=False`` (CuPy arrays) runs everything inline.
    """
    items = list(items)
    threads = min(blas_threads(), len(items)) if parallel else 1
    if threads <= 1:
        for item in items:
            work(item)
        return
    queue = iter(items)
    queue_lock = threading.Lock()

    def worker() -> None:
        _inside_worker.active = True
        try:
            while True:
                with queue_lock:
                    item = next(queue, None)
                if item is None:
                    return
                work(item)
        finally:
            _inside_worker.active = False

    with _single_threaded_blas():
        helpers = [_helpers(threads - 1).submit(worker) for _ in range(threads - 1)]
        try:
            worker()  # the calling thread takes tiles too
        finally:
            for future in helpers:  # every tile written (or failed) before returning
                future.exception()
        for future in helpers:
            future.result()


def _helpers(count: int) -> ThreadPoolExecutor:
    """The calling thread's own pool of ``count`` or more tile threads, kept between calls.

    Started threads wait for the next call's tiles: a new pool per call started its second
    thread 0.7-2 ms after the first on the development machine (a depthwise 3x3 call of
    ~2 ms on two threads took 3.5-4.5 ms). One pool per calling thread (a Dask worker thread,
    the main thread), so concurrent calls never queue behind each other's tiles.
    """
    pool: ThreadPoolExecutor | None = getattr(_pools, "executor", None)
    if pool is None or _pools.size < count:
        if pool is not None:
            pool.shutdown(wait=False)
        pool = ThreadPoolExecutor(count, thread_name_prefix="featuremap-tile")
        _pools.executor, _pools.size = pool, count
    return pool


def _forget_pools() -> None:
    """In a forked child: the parent's pool threads do not exist there."""
    global _pools
    _pools = threading.local()


_pools = threading.local()
os.register_at_fork(after_in_child=_forget_pools)
