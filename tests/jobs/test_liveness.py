"""Liveness across hosts (``featuremap.jobs.liveness``): a job is alive while its heartbeat
*changes*, timed by this host's monotonic clock; the writer's wall clock is never compared with
ours. A heartbeat thread writes the records of a live job on a "host" 90 s behind ours."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from support.procs import age_heartbeat

from featuremap.errors import StoreBusyError
from featuremap.io import OutputStore
from featuremap.jobs import state
from featuremap.jobs.liveness import remember
from featuremap.jobs.run import run_layers
from featuremap.jobs.state import read_status

SKEW_S = 90.0


@contextmanager
def skewed_heartbeat(store: str, period_s: float = 0.2) -> Iterator[None]:
    """A live job on another host whose clock is :data:`SKEW_S` behind ours: its heartbeat is
    rewritten every ``period_s``, each value its own (old-looking) wall time. (A real job beats
    every few seconds; every look that waits for a beat waits for this one's period.)"""
    output = OutputStore.open(store, "r+")
    owner = replace(state.new_owner(), host="elsewhere", pid=1)
    fingerprint = output.root["fingerprint"]  # the same job, resumable
    state.start_job(output, owner=owner, fingerprint=fingerprint, blocks_total=20, blocks_done=20)
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            output.update_job({"heartbeat": time.time() - SKEW_S})
            stop.wait(period_s)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@pytest.mark.cluster
@pytest.mark.slow
def test_live_job_on_a_host_behind_ours_is_running_and_never_taken_over(finished, client):
    store, layers, _, source = finished
    with skewed_heartbeat(str(store)):
        started = time.monotonic()
        assert read_status(str(store))["status"] == "running"
        assert time.monotonic() - started < state.HEARTBEAT_INTERVAL_S + 2  # status stays fast
        assert read_status(str(store))["status"] == "running"  # now from what was seen before
        with pytest.raises(StoreBusyError, match="still running"):
            run_layers(layers, input=source, output=str(store), resume=True, client=client)
        assert OutputStore.open(str(store)).job["owner"]["host"] == "elsewhere"
    # the beats stop: once seen still for the timeout (here: remembered as seen that long), the
    # job is interrupted and --resume takes it over
    age_heartbeat(store, state.HEARTBEAT_TIMEOUT_S + 1)
    assert read_status(str(store))["status"] == "interrupted"
    run_layers(layers, input=source, output=str(store), resume=True, client=client)
    assert read_status(str(store))["status"] == "complete"


def test_a_still_heartbeat_is_not_dead_before_the_timeout_of_our_clock(finished):
    store = str(finished[0])
    output = OutputStore.open(store, "r+")
    owner = replace(state.new_owner(), host="elsewhere", pid=1)
    state.start_job(output, owner=owner, fingerprint="f" * 64, blocks_total=20)
    # a heartbeat that looks ancient by our clock but that this host first saw only now
    output.update_job({"heartbeat": time.time() - 10 * SKEW_S})
    assert state.heartbeat_liveness(store, output.job["heartbeat"]) == "unknown"
    assert state.heartbeat_liveness(store, output.job["heartbeat"]) == "unknown"
    output.update_job({"heartbeat": time.time() - 10 * SKEW_S})  # it beat
    assert state.heartbeat_liveness(store, output.job["heartbeat"]) == "alive"
    # a change since a look long ago proves only that it beat at some time since
    remember(store, output.job["heartbeat"], time.monotonic() - 2 * state.HEARTBEAT_TIMEOUT_S)
    output.update_job({"heartbeat": time.time() - 10 * SKEW_S})
    assert state.heartbeat_liveness(store, output.job["heartbeat"]) == "unknown"
