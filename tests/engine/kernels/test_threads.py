"""``featuremap.engine.kernels._threads``: BLAS threads in tiled kernels, inline and threaded."""

from __future__ import annotations

import os

import numpy as np
import pytest
from support.procs import fresh_python
from support.torch_reference import assert_close, gaussian_bank

from featuremap.engine.kernels import conv2d_valid


def test_inline_and_threaded_tiles_agree():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from concurrent.futures import ThreadPoolExecutor

    from featuremap.engine.kernels._threads import blas_threads

    rng = np.random.default_rng(15)
    x = rng.standard_normal((2, 3, 150, 140)).astype(np.float32)
    weight = rng.standard_normal((8, 3, 5, 5)).astype(np.float32)
    bank = gaussian_bank(size=9)
    threaded = (
        conv2d_valid(x, weight, method="gemm"),
        conv2d_valid(x[:, :1], bank, method="separable"),
    )
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert blas_threads() == 1
        inline = (
            conv2d_valid(x, weight, method="gemm"),
            conv2d_valid(x[:, :1], bank, method="separable"),
        )
    # BLAS may sum in another order with another thread count: equal to float32 rounding.
    assert_close(threaded[0], inline[0].astype(np.float64), x, weight)
    assert_close(threaded[1], inline[1].astype(np.float64), x, bank)
    # Concurrent calls share the single-thread BLAS limit and restore the setting at the end.
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: conv2d_valid(x, weight, method="gemm"), range(6)))
    for result in results:
        assert_close(result, threaded[0].astype(np.float64), x, weight)


#: In a fresh interpreter, where no other test's threads can hold a BLAS limit meanwhile.
RESTORED = """
from concurrent.futures import ThreadPoolExecutor
import numpy as np, threadpoolctl
from featuremap.engine.kernels import conv2d_valid
from featuremap.engine.kernels._threads import blas_threads
threadpoolctl.threadpool_limits(2, user_api="blas")
x = np.random.default_rng(1).standard_normal((2, 3, 150, 140)).astype(np.float32)
w = np.random.default_rng(2).standard_normal((8, 3, 5, 5)).astype(np.float32)
before = blas_threads()
with ThreadPoolExecutor(3) as pool:
    list(pool.map(lambda _: conv2d_valid(x, w, method="gemm"), range(12)))
conv2d_valid(x, w, method="gemm")
print(before, blas_threads())
"""


def test_blas_threads_are_restored_after_concurrent_calls():
    pytest.importorskip("threadpoolctl")
    before, after = fresh_python(RESTORED).split()
    assert before == after == "2"


#: A block task's budget (``task_threads``): its own thread count, BLAS at one thread inside,
#: the process's BLAS setting back after; tile threads inside a task see one thread each.
TASK_BUDGET = """
import threadpoolctl
from featuremap.engine.kernels import task_threads
from featuremap.engine.kernels._threads import blas_threads, run_tiles
threadpoolctl.threadpool_limits(2, user_api="blas")
def blas():
    return max(i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")
seen = []
with task_threads(1):
    one = (blas_threads(), blas())
with task_threads(3):
    three = (blas_threads(), blas())
    run_tiles(lambda item: seen.append(blas_threads()), range(4))
print(*one, *three, sorted(set(seen)), blas_threads(), blas())
"""


def test_a_task_runs_on_its_own_thread_budget_with_single_threaded_blas():
    pytest.importorskip("threadpoolctl")
    assert fresh_python(TASK_BUDGET).split() == ["1", "1", "3", "1", "[1]", "2", "2"]


#: Block tasks on the threads of a threaded Dask worker, after the planning (main) thread has
#: set and restored the BLAS limit once (as the codec sample does): each task's BLAS runs on
#: one thread, and their features are bit-identical to the same calls made one at a time.
CONCURRENT_TASKS = """
import threading
import numpy as np, threadpoolctl
from featuremap.engine.kernels import conv2d_valid, task_threads
lib = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers[0]
before = lib.get_num_threads()
rng = np.random.default_rng(4)
w = rng.standard_normal((16, 1, 35, 35)).astype(np.float32)
xs = [rng.random((1, 1, 66, 66), dtype=np.float32) for _ in range(8)]
with task_threads(1):  # the main thread takes, then gives back, the BLAS limit
    alone = [conv2d_valid(x, w, method="gemm") for x in xs]
seen, together = set(), [None] * len(xs)
def task(first):
    with task_threads(1):
        for i in range(first, len(xs), 2):
            seen.add(lib.get_num_threads())
            together[i] = conv2d_valid(xs[i], w, method="gemm")
threads = [threading.Thread(target=task, args=(k,)) for k in (0, 1)]
for thread in threads: thread.start()
for thread in threads: thread.join()
same = all(np.array_equal(a, b) for a, b in zip(alone, together))
print(before, sorted(seen), same, lib.get_num_threads())
"""


def test_concurrent_tasks_run_single_threaded_blas_and_agree_bit_for_bit():
    pytest.importorskip("threadpoolctl")
    # two BLAS threads by default, whatever this process's environment says (a nanny's workers
    # and some tests set one)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    output = fresh_python(CONCURRENT_TASKS, env=env)
    before, *rest = output.split()
    if before == "1":
        pytest.skip("BLAS runs on one thread on this machine: nothing to limit")
    assert rest == ["[1]", "True", before], output


#: Tile threads are kept per calling thread between calls (no start-up per call), the caller
#: takes tiles too, a failing tile fails the call only after every tile has run, and a forked
#: child (whose parent's pool threads do not exist in it) starts its own.
KEPT_POOLS = """
import os, threading, threadpoolctl
from featuremap.engine.kernels._threads import run_tiles
threadpoolctl.threadpool_limits(2, user_api="blas")
def names():
    seen = set()
    def work(item):
        seen.add((threading.current_thread().name, threading.get_ident()))
        threading.Event().wait(0.002)  # long enough for both threads to take tiles
    run_tiles(work, range(8))
    return seen
first, second = names(), names()
other = []
caller = threading.Thread(target=lambda: other.append(names()), name="caller")
caller.start(); caller.join()
mine = {ident for name, ident in first if name != "MainThread"}
theirs = {ident for name, ident in other[0] if name != "caller"}
done = []
def failing(item):
    done.append(item)
    if item == 0:
        raise ValueError("tile 0")
try:
    run_tiles(failing, range(6))
except ValueError as error:
    failed = (str(error), sorted(done))
pid = os.fork()
if pid == 0:
    os._exit(0 if len(names()) == 2 else 1)
child = os.waitpid(pid, 0)[1]
print(first == second, "MainThread" in {name for name, _ in first}, len(first),
      len(theirs) == 1 and not theirs & mine, failed, child)
"""


def test_tile_threads_are_kept_per_caller_and_survive_fork():
    pytest.importorskip("threadpoolctl")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    output = fresh_python(KEPT_POOLS, env=env, timeout=60)
    assert output.split(maxsplit=4)[:4] == ["True", "True", "2", "True"]
    assert output.strip().endswith("('tile 0', [0, 1, 2, 3, 4, 5]) 0")
