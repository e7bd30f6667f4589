"""The threads a small job runs on without Dask's scheduler (``featuremap.cluster.inline``)."""

from __future__ import annotations

import os
import threading

from featuremap.cluster.client import THREADS_MAX_BLOCKS, cluster_client, runs_inline
from featuremap.cluster.inline import InlineCluster, inline_cluster


def test_a_small_job_left_to_itself_runs_inline():
    assert runs_inline(None, None, 1)
    assert runs_inline(None, None, THREADS_MAX_BLOCKS)
    assert not runs_inline(None, None, THREADS_MAX_BLOCKS + 1)  # worker processes
    assert not runs_inline(False, None, 1)  # --threads: one worker with its scheduler
    assert not runs_inline(True, None, 1)
    assert not runs_inline(None, "127.0.0.1:0", 1)  # a dashboard asked for needs a scheduler


def test_what_a_job_asks_of_its_cluster():
    with inline_cluster(3) as cluster:
        assert cluster.status == "running"
        assert cluster.dashboard_link is None
        assert cluster.nthreads() == {"inline": 3}
        assert cluster.run(os.getpid) == {"inline": os.getpid()}  # "every worker": this process
        assert cluster.get_metadata(["jobs"], default={}) == {}
        cluster.set_metadata(["jobs", "a"], {"state": "running"})
        cluster.set_metadata(["jobs", "b"], 2)
        assert cluster.get_metadata(["jobs"]) == {"a": {"state": "running"}, "b": 2}
        assert cluster.get_metadata(["jobs", "a", "state"]) == "running"
        assert cluster.get_metadata(["jobs", "b", "deeper"], default="none") == "none"
        names = {cluster.submit(lambda: threading.current_thread().name).result()}
        assert all(name.startswith("featuremap-block") for name in names)
    assert cluster.status == "closed"
    with inline_cluster(None) as default:
        assert default.threads == os.cpu_count()


def test_close_drops_the_tasks_not_started():
    cluster = InlineCluster(1)
    release = threading.Event()
    running = cluster.submit(release.wait, 10)
    queued = cluster.submit(lambda: "ran")
    closer = threading.Thread(target=cluster.close)
    closer.start()
    release.set()
    closer.join(10)
    assert running.result() is True
    assert queued.cancelled()


def test_cluster_client_yields_an_inline_cluster_with_blas_single_threaded():
    from threadpoolctl import threadpool_info

    with cluster_client(None, None, 2, None, inline=True) as cluster:
        assert isinstance(cluster, InlineCluster)
        assert cluster.threads == 2
        assert all(
            pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas"
        )
    assert cluster.status == "closed"
