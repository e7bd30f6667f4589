"""Job records on real stores (``featuremap.jobs.state``): owner liveness and heartbeat, adoption
of a submitted job, the status of an unfinished store."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
from support.procs import age_heartbeat, dead_pid
from support.stores import small_layout

from featuremap.engine.layers import PoolLayer
from featuremap.errors import StoreBusyError
from featuremap.io import OutputStore, create_output, open_features
from featuremap.io.markers import block_number
from featuremap.jobs import state
from featuremap.jobs.state import read_status


@pytest.mark.parametrize(
    ("owner", "status", "stale_status"),
    [
        # a live process on this host is never declared dead, however old its heartbeat: it may
        # be stopped (SIGSTOP) and is fenced by its job token if it ever resumes
        (lambda: state.new_owner(), "running", "running"),
        (lambda: replace(state.new_owner(), pid=dead_pid()), "interrupted", "interrupted"),
        (lambda: state.new_owner(process=False), "running", "interrupted"),  # submitted only
        (lambda: replace(state.new_owner(), host="elsewhere", pid=1), "running", "interrupted"),
    ],
    ids=["live owner", "dead owner", "no process", "other host"],
)
def test_running_or_interrupted(finished, owner, status, stale_status):
    store = finished[0]
    group = OutputStore.open(str(store), "r+")
    state.start_job(group, owner=owner(), fingerprint="f" * 64, blocks_total=20, blocks_done=20)
    assert read_status(str(store))["status"] == status
    age_heartbeat(store, state.HEARTBEAT_TIMEOUT_S + 1)
    assert read_status(str(store))["status"] == stale_status


def test_same_host_owner_with_recycled_pid_is_dead(finished):
    store = finished[0]
    group = OutputStore.open(str(store), "r+")
    # our own pid, but a different process start time: the pid was reused after the owner died
    owner = replace(state.new_owner(), start=1)
    state.start_job(group, owner=owner, fingerprint="f" * 64, blocks_total=20)
    age_heartbeat(store, state.HEARTBEAT_TIMEOUT_S + 1)
    assert read_status(str(store))["status"] == "interrupted"


def test_adopt_job(finished):
    store = finished[0]
    group = OutputStore.open(str(store), "r+")
    submitted = state.new_owner(process=False)
    state.start_job(group, owner=submitted, fingerprint="f" * 64, blocks_total=20)
    adopted = state.adopt_job(group, submitted)
    assert adopted.id == submitted.id
    assert adopted.pid == os.getpid()
    assert read_status(str(store))["owner"] == adopted.to_dict()
    with pytest.raises(StoreBusyError, match="taken over by another job"):
        state.adopt_job(group, state.new_owner())


def test_status_of_an_unfinished_store(tmp_path):
    store = str(tmp_path / "job.zarr")
    layer = PoolLayer.create("max", 2)
    output = create_output(
        store,
        layout=small_layout((3,)),
        # the geometry every store records (checked against the data: io.records)
        geometry_attrs={"layers": [layer.to_dict()], **small_layout((3,)).stack.to_dict()},
        weights=[],
        root_attrs={},
        job_attrs={},
    )
    owner = replace(state.new_owner(), host="elsewhere")  # liveness judged by heartbeat alone
    state.start_job(output, owner=owner, fingerprint="f" * 64, blocks_total=12)
    assert read_status(store)["status"] == "running"
    assert read_status(store)["blocks_done"] == 0
    writer = output.marker_writer(lambda: None)
    writer.mark(block_number((1, 0, 1), output.grid_shape))
    writer.flush()
    assert read_status(store)["blocks_done"] == 1
    age_heartbeat(store, 2 * state.HEARTBEAT_TIMEOUT_S)
    status = read_status(store)
    assert status["status"] == "interrupted"
    assert status["blocks_total"] == 12
    # a missing chunk reads as NaN: "not computed", never zeros
    assert np.isnan(open_features(store).data[0].compute()).all()
