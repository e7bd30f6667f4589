"""Jobs sharing one cluster (DESIGN section 9), on a real ``dask scheduler`` and two ``dask
worker`` processes on 127.0.0.1: two backlogged jobs split the cluster's window and its block
throughput, and twenty failed jobs with 64 MiB weight banks leave nothing on the workers.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import zarr
from support.procs import dask_cluster, wait_for

from featuremap.apps.jobs import cancel
from featuremap.jobs.registry import task_prefix
from featuremap.jobs.run import submit
from featuremap.jobs.share import window_size
from featuremap.jobs.state import read_status

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PIPELINE = """\
name: {name}
input: {{store: {input}}}
output: {{chunks: [1, {chunk}, {chunk}], codec: lz4}}  # not sampled: blocks fail on the cluster
layers:
  - conv: {{bank: {{type: file, path: {weights}}}, padding: same}}
"""
#: How long the two jobs' shares are measured (the issue asks for a minute; the suite's time is
#: short, and a 2-worker cluster runs hundreds of blocks in this much: 730 / 736 in 10 s
#: standalone under load, each job's batches interleaved first in, first out).
MEASURE_S = 5.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``(address, client)``: the scheduler and a client of it, its two workers connected."""
    from distributed import Client

    with (
        dask_cluster(tmp_path_factory.mktemp("cluster"), workers=2) as (address, _),
        Client(address, timeout="30s") as client,
    ):
        client.wait_for_workers(2, timeout=60)
        yield address, client


def _pipeline(folder: Path, name: str, data: np.ndarray, bank: np.ndarray, chunk: int) -> Path:
    source = folder / f"{name}-in.zarr"
    zarr.create_array(str(source), data=data, chunks=(len(data), 64, 64))
    weights = folder / f"{name}-w.npy"
    np.save(weights, bank)
    path = folder / f"{name}.yaml"
    path.write_text(PIPELINE.format(name=name, input=source, weights=weights, chunk=chunk))
    return path


def _in_flight(client, prefixes: dict[str, str]) -> Counter[str]:
    """Block tasks of each job the scheduler holds but has not finished (queued or running)."""

    def count(dask_scheduler, prefixes=prefixes):  # runs on the scheduler
        counts = dict.fromkeys(prefixes, 0)
        for key, task in dask_scheduler.tasks.items():
            for name, prefix in prefixes.items():
                if str(key).startswith(prefix) and task.state not in ("memory", "erred"):
                    counts[name] += 1
        return counts

    return Counter(client.run_on_scheduler(count))


def test_two_backlogged_jobs_split_the_window_and_the_throughput(tmp_path, cluster):
    address, client = cluster
    rng = np.random.default_rng(3)
    pipeline = _pipeline(
        tmp_path,
        "long",
        rng.random((1, 1024, 768), dtype=np.float32),
        rng.standard_normal((16, 1, 9, 9)).astype(np.float32),
        chunk=16,
    )  # 3072 blocks of 16 x 16, a chunk file per feature: each stays backlogged throughout
    client.get_task_stream()  # the scheduler records the task stream from now on
    ids = {}
    for name in ("a", "b"):
        submit(
            pipeline,
            scheduler=address,
            output=str(tmp_path / f"{name}.zarr"),
            on_submitted=lambda record, _, name=name: ids.__setitem__(name, record.id),
        )
    prefixes = {name: f"{task_prefix(job)}block-" for name, job in ids.items()}
    stores = {name: str(tmp_path / f"{name}.zarr") for name in ids}
    wait_for(lambda: all(read_status(s)["blocks_done"] > 0 for s in stores.values()), 60, "both")
    # a refill of each, now that both run: the first one down from the whole window to its share
    window = window_size(client)
    wait_for(
        lambda: max(_in_flight(client, prefixes).values()) <= window // 2 + 1,
        15,
        "each job down to its share of the window",
    )

    peaks: Counter[str] = Counter()
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.3):
            for name, count in _in_flight(client, prefixes).items():
                peaks[name] = max(peaks[name], count)

    sampler = threading.Thread(target=sample)
    start = time.time()
    sampler.start()
    time.sleep(MEASURE_S)
    stop.set()
    sampler.join()
    end = time.time()
    ended = {name: read_status(store) for name, store in stores.items()}
    assert all(info["status"] == "running" for info in ended.values()), ("not backlogged", ended)

    started: Counter[str] = Counter()
    for task in client.get_task_stream(start=start):
        compute = [s for s in task["startstops"] if s["action"] == "compute"]
        if not compute or not start <= compute[0]["start"] <= end:
            continue
        for name, prefix in prefixes.items():
            started[name] += str(task["key"]).startswith(prefix)
    total = sum(started.values())
    print(f"blocks started in {MEASURE_S:.0f} s: {dict(started)}; in flight at most: {dict(peaks)}")
    assert total > 50, started
    for name in ids:
        assert started[name] >= 0.4 * total, started
    # each keeps its share of the window in flight (and its refill), not a window of its own
    for name in ids:
        assert peaks[name] <= window // 2 + 1, (peaks, window)

    # a job of higher priority behind their backlog starts before it has run another window
    urgent = _pipeline(
        tmp_path,
        "urgent",
        rng.random((1, 64, 64), dtype=np.float32),
        rng.standard_normal((16, 1, 9, 9)).astype(np.float32),
        chunk=16,
    )  # 16 blocks
    submit(
        urgent,
        scheduler=address,
        output=str(tmp_path / "urgent.zarr"),
        priority=10,
        on_submitted=lambda record, _: ids.__setitem__("urgent", record.id),
    )
    submitted_at = time.time()  # queued on the cluster
    urgent_store = str(tmp_path / "urgent.zarr")
    wait_for(lambda: read_status(urgent_store)["blocks_done"] > 0, 60, "the urgent job's blocks")
    firsts = _first_starts(client, submitted_at, {**prefixes, "urgent": task_prefix(ids["urgent"])})
    before = sum(1 for name, start in firsts if name != "urgent" and start < _urgent(firsts))
    print(f"backlog blocks started before the urgent job's first: {before} (window {window})")
    assert before < window, before
    for name in ("a", "b"):
        cancel(ids[name], client)


def _first_starts(client, since: float, prefixes: dict[str, str]) -> list[tuple[str, float]]:
    """``(job, compute start)`` of every block task of ``prefixes``' jobs started ``since``."""
    starts = []
    for task in client.get_task_stream(start=since):
        compute = [s["start"] for s in task["startstops"] if s["action"] == "compute"]
        for name, prefix in prefixes.items():
            if compute and str(task["key"]).startswith(prefix) and "-block-" in str(task["key"]):
                starts.append((name, compute[0]))
    return starts


def _urgent(starts: list[tuple[str, float]]) -> float:
    return min(start for name, start in starts if name == "urgent")


#: Jobs that fail in :func:`test_failed_jobs_leave_nothing_on_the_workers`, and how many at once.
FAILED_JOBS, AT_ONCE = 20, 4
#: A learned bank of 64 MiB (the largest a `file` bank may hold): 16 filters of 264 channels of
#: 63 x 63 float32, on an input of 264 channels. Few features: a store's metadata has an entry
#: per feature (4 227 single-channel filters made each submission's own work a third slower).
BANK_SHAPE = (16, 264, 63, 63)
#: How much a worker's RSS may end above its baseline: less than one bank. A job that left its
#: weights behind adds 64 MiB, twenty add 1.25 GiB (before a submitted job's driver stopped
#: erring: +66 MiB a job on the driver's worker, +1.3 GiB after 20); what moves otherwise is
#: the allocator's arenas (Python's own are not trimmed) and Dask's own bookkeeping (0-37 MiB
#: measured on the drivers' worker after 20 jobs under load, 0-1 MiB on the other).
RSS_MARGIN = 56 * 2**20


def _rss(client) -> dict[str, int]:
    def resident() -> int:  # runs on each worker
        import ctypes
        import gc

        import psutil

        gc.collect()
        # hand the allocator's free pages back, as a worker under a nanny does on its own
        # (Dask's nanny sets MALLOC_TRIM_THRESHOLD_; these workers run without one)
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return psutil.Process().memory_info().rss

    return client.run(resident)


def _keys(client) -> list[str]:
    """The keys the scheduler holds (a task, a future's data)."""
    return client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])


def test_failed_jobs_leave_nothing_on_the_workers(tmp_path, cluster):
    address, client = cluster
    rng = np.random.default_rng(5)
    pipeline = _pipeline(
        tmp_path,
        "leak",
        rng.random((BANK_SHAPE[1], 32, 32), dtype=np.float32),
        rng.standard_normal(BANK_SHAPE, dtype=np.float32),
        chunk=32,
    )
    for chunk in (tmp_path / "leak-in.zarr" / "c").rglob("*"):
        if chunk.is_file():
            chunk.write_bytes(b"not a chunk")  # every block fails reading its input

    def fail(names: list[str]) -> None:
        stores = [str(tmp_path / f"{name}.zarr") for name in names]
        for store in stores:
            submit(pipeline, scheduler=address, output=store)
        wait_for(lambda: all(read_status(s)["status"] == "failed" for s in stores), 120, "failures")
        assert "unreadable input chunk" in read_status(stores[0])["error"]

    # imports, caches, Dask's first records and the allocator's arenas of a batch of jobs at
    # once: the baseline includes them
    fail([f"warm-{i}" for i in range(AT_ONCE)])
    wait_for(lambda: not _keys(client), 15, "the cluster to forget the job")
    baseline = _rss(client)
    for first in range(0, FAILED_JOBS, AT_ONCE):
        fail([f"failed-{i}" for i in range(first, first + AT_ONCE)])
    wait_for(lambda: not _keys(client), 15, "the cluster to forget the jobs")
    grown = {worker: rss - baseline[worker] for worker, rss in _rss(client).items()}
    print(
        f"worker RSS after {FAILED_JOBS} failed jobs, over the baseline (MiB):",
        grown_mib := {worker: round(growth / 2**20, 1) for worker, growth in grown.items()},
    )
    assert all(growth < RSS_MARGIN for growth in grown.values()), grown_mib
