"""What sharing a job's data through a task costs (issue 23, D13), against a broadcast scatter.

A job's shared data (layers, plan: :func:`featuremap.jobs.execute.share_job`) is a task, so
that Dask computes it again when the worker holding it dies; scattered data would be lost with
it. The price is that the scheduler keeps the task's definition (the pickled data) while the job
runs. For 1, 64 and 256 MiB of data on one ``LocalCluster`` (2 worker processes x 1 thread):
the time until 8 tasks using it have run on both workers, and how much the scheduler's process
grew (in a ``LocalCluster`` the scheduler runs in this process).

Usage::

    python benchmarks/share_job.py
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np


def _identity(data: Any) -> Any:
    return data


def _use(data: Any, index: int) -> float:
    return float(data[index])


def _rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _share(client: Any, data: np.ndarray, how: str) -> Any:
    if how == "scatter":
        [shared] = client.scatter([data], broadcast=True, hash=False)
        return shared
    return client.submit(_identity, data, pure=False)


def main() -> None:
    import distributed

    warnings.simplefilter("ignore")  # distributed's advice to scatter large graph arguments
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):  # fmt: skip
        for mib in (1, 64, 256):
            data = np.random.default_rng(0).random(mib * 2**18, dtype=np.float32)
            for how in ("scatter", "task"):
                before = client.run_on_scheduler(_rss_mib)
                start = time.perf_counter()
                shared = _share(client, data, how)
                futures = [client.submit(_use, shared, i, pure=False) for i in range(8)]
                client.gather(futures)
                took = time.perf_counter() - start
                grown = client.run_on_scheduler(_rss_mib) - before
                print(f"{mib:4d} MiB {how:8s} {took:6.2f} s, scheduler RSS +{grown:6.1f} MiB")
                client.cancel([shared, *futures])
                time.sleep(1)


if __name__ == "__main__":
    main()
