"""Connecting to a cluster (``featuremap.cluster.client``): the warning for an unauthenticated
remote scheduler, and the local cluster, which listens on loopback only."""

from __future__ import annotations

import pytest

from featuremap.cluster.client import cluster_client, insecure_scheduler_message


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
