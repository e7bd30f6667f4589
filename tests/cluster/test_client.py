"""Connecting to a cluster (``featuremap.cluster.client``): the warning for an unauthenticated
remote scheduler, and the local cluster, which listens on loopback only."""

from __future__ import annotations

import pytest

from featuremap.cluster.client import (
    THREADS_MAX_BLOCKS,
    cluster_client,
    insecure_scheduler_message,
    local_processes,
)


@pytest.mark.parametrize(
    ("address", "warns"),
    [
        ("tcp://127.0.0.1:8786", False),
        ("tcp://localhost:8786", False),
        ("tcp://[::1]:8786", False),
        ("127.0.0.1:8786", False),
        ("tls://10.0.0.5:8786", False),
        ("tcp://10.0.0.5:8786", True),
        ("tcp://scheduler:8786", True),
        ("10.0.0.5:8786", True),
        ("tcp://[2001:db8::1]:8786", True),
        # every scheme that carries Dask's protocol in plain text warns; all of 127/8 is loopback
        ("ws://10.0.0.5:8786", True),
        ("ws://127.0.0.1:8786", False),
        ("wss://10.0.0.5:8786", False),
        ("tcp://127.1:8786", False),
        ("tcp://127.0.0.2:8786", False),
        ("tcp://127.255.255.254:8786", False),
        ("TCP://10.0.0.5:8786", True),
        ("tcp://[::ffff:10.0.0.5]:8786", True),
    ],
)
def test_unauthenticated_scheduler_warning(address, warns):
    message = insecure_scheduler_message(address)
    assert (message is not None) == warns
    if warns:
        assert "unauthenticated" in message
        assert "\n" not in message
        assert "tls://" in message


def test_local_cluster_listens_on_loopback_only():
    """Scheduler, workers and dashboard of the default local cluster bind 127.0.0.1: no socket
    of the cluster's processes listens on another address."""
    import psutil

    links = []
    with cluster_client(None, None, 1, None, on_dashboard=links.append) as client:
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert all(a.startswith("tcp://127.0.0.1:") for a in client.scheduler_info()["workers"])
        assert links == [client.dashboard_link]
        assert links[0].startswith("http://127.0.0.1:")
        me = psutil.Process()
        listening = [
            conn.laddr.ip
            for process in [me, *me.children(recursive=True)]
            for conn in process.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        ]
    assert listening, "the cluster should listen somewhere"
    assert set(listening) == {"127.0.0.1"}, listening


def test_small_jobs_run_threads_unless_told():
    assert local_processes(None, 1) is False
    assert local_processes(None, THREADS_MAX_BLOCKS) is False
    assert local_processes(None, THREADS_MAX_BLOCKS + 1) is True
    assert local_processes(False, 10**6) is False
    assert local_processes(True, 1) is True


def test_threaded_local_cluster_runs_in_this_process_on_loopback():
    """``processes=False``: one worker of ``workers`` threads, in this process, on 127.0.0.1."""
    import os

    with cluster_client(None, None, 2, None, processes=False) as client:
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert list(client.nthreads().values()) == [2]
        assert list(client.run(os.getpid).values()) == [os.getpid()]
