"""Job bookkeeping on real stores: the claim file, owner liveness and heartbeat, adoption of a
submitted job, the unauthenticated-scheduler warning, and :func:`verify_store` with repair."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster

from featuremap import _jobs
from featuremap._runner import insecure_scheduler_message, run_layers
from featuremap._store import open_output_group, read_status
from featuremap._verify import verify_store
from featuremap.errors import StoreBusyError
from featuremap.layers import ConvLayer, apply_stack


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --------------------------------------------------------------------------------------- claim


def test_claim_is_exclusive_and_released(tmp_path):
    store = tmp_path / "nested" / "out.zarr"
    claim = tmp_path / "nested" / "out.zarr.lock"
    with _jobs.claim_store(store, _jobs.new_owner(), str(store)):
        holder = json.loads(claim.read_text())
        assert holder["pid"] == os.getpid() and holder["time"] <= time.time()
        with pytest.raises(StoreBusyError, match="being opened by another job"):
            with _jobs.claim_store(store, _jobs.new_owner(), str(store)):
                pass
        assert claim.exists()  # the refused claim did not remove the holder's file
    assert not claim.exists()
    with _jobs.claim_store(None, _jobs.new_owner(), "s3://bucket/out.zarr"):  # remote: no claim
        pass


@pytest.mark.parametrize(
    ("holder", "stale"),
    [
        (lambda: {"host": socket.gethostname(), "pid": _dead_pid(), "time": time.time()}, True),
        (lambda: {"host": socket.gethostname(), "pid": os.getpid(),
                  "time": time.time() - 2 * _jobs.CLAIM_TIMEOUT_S}, True),
        (lambda: "torn", True),
        (lambda: {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}, False),
        (lambda: {"host": "elsewhere", "pid": 1, "time": time.time()}, False),
    ],
    ids=["dead owner", "old", "unreadable", "live owner", "other host, fresh"],
)
def test_leftover_claim(tmp_path, holder, stale):
    store = tmp_path / "out.zarr"
    claim = tmp_path / "out.zarr.lock"
    content = holder()
    claim.write_text(content if isinstance(content, str) else json.dumps(content))
    if stale:
        with _jobs.claim_store(store, _jobs.new_owner(), str(store)):
            assert json.loads(claim.read_text())["pid"] == os.getpid()
    else:
        with pytest.raises(StoreBusyError):
            with _jobs.claim_store(store, _jobs.new_owner(), str(store)):
                pass


# ------------------------------------------------------------------------------ status / owner


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as active:
            yield active


@pytest.fixture()
def finished(tmp_path, client) -> tuple[Path, list, np.ndarray, str]:
    """A complete store of 4 x 5 blocks: ``(store, layers, features, input)``."""
    rng = np.random.default_rng(21)
    data = rng.random((1, 40, 50), dtype=np.float32)
    source = str(tmp_path / "in.zarr")
    zarr.create_array(source, data=data, chunks=(1, 20, 25))
    layers = [ConvLayer.create(rng.standard_normal((3, 1, 5, 5)), padding="same", padding_mode="reflect")]
    store = tmp_path / "out.zarr"
    run_layers(layers, input=source, output=str(store), out_chunks=(10, 10), client=client)
    features = zarr.open_group(str(store), mode="r")["features"][...]
    np.testing.assert_allclose(features, apply_stack(layers, data), rtol=2e-5, atol=2e-5)
    return store, layers, features, source


@pytest.mark.parametrize(
    ("owner", "status"),
    [
        (lambda: _jobs.new_owner(), "running"),
        (lambda: {**_jobs.new_owner(), "pid": _dead_pid()}, "interrupted"),
        (lambda: _jobs.new_owner(process=False), "running"),  # submitted, not yet adopted
        (lambda: {**_jobs.new_owner(), "host": "elsewhere", "pid": 1}, "running"),
    ],
    ids=["live owner", "dead owner", "no process", "other host"],
)
def test_running_or_interrupted(finished, owner, status):
    store = finished[0]
    group = open_output_group(str(store), "r+")
    _jobs.start_job(group, owner=owner(), fingerprint="f" * 64, blocks_total=20, blocks_done=20)
    assert read_status(str(store))["status"] == status
    group["_job"].attrs["heartbeat"] = time.time() - _jobs.HEARTBEAT_TIMEOUT_S - 1
    assert read_status(str(store))["status"] == "interrupted"  # stale, whoever the owner


def test_adopt_job(finished):
    store = finished[0]
    group = open_output_group(str(store), "r+")
    submitted = _jobs.new_owner(process=False)
    _jobs.start_job(group, owner=submitted, fingerprint="f" * 64, blocks_total=20)
    adopted = _jobs.adopt_job(group, submitted, str(store))
    assert adopted["id"] == submitted["id"] and adopted["pid"] == os.getpid()
    assert read_status(str(store))["owner"] == adopted
    with pytest.raises(StoreBusyError, match="taken over by another job"):
        _jobs.adopt_job(group, _jobs.new_owner(), str(store))


@pytest.mark.parametrize(
    ("address", "warns"),
    [
        ("tcp://127.0.0.1:8786", False), ("tcp://localhost:8786", False), ("tcp://[::1]:8786", False),
        ("127.0.0.1:8786", False), ("tls://10.0.0.5:8786", False), ("tcp://10.0.0.5:8786", True),
        ("tcp://scheduler:8786", True), ("10.0.0.5:8786", True), ("tcp://[2001:db8::1]:8786", True),
    ],
)
def test_unauthenticated_scheduler_warning(address, warns):
    message = insecure_scheduler_message(address)
    assert (message is not None) == warns
    if warns:
        assert "unauthenticated" in message and "\n" not in message and "tls://" in message


# -------------------------------------------------------------------------------------- verify


def test_verify_clean_store(finished):
    report = verify_store(str(finished[0]))
    assert report.clean and (report.blocks_total, report.blocks_done, report.chunks_read) == (20, 20, 20)
    assert report.to_dict()["clean"] and report.status == "complete"


def test_verify_unmarked_and_bad_marker_then_repair_and_resume(finished, client):
    store, layers, features, source = finished
    (store / "_job" / "done" / "c" / "0" / "1").unlink()  # data on disk, marker lost: not damage
    (store / "_job" / "done" / "c" / "2" / "3").write_bytes(b"\x00not a chunk")
    report = verify_store(str(store))
    assert report.unmarked == ((0, 1),) and report.bad_marker == ((2, 3),)
    assert report.damaged == ((2, 3),) and not report.clean and "2,3" in report.errors
    assert not verify_store(str(store)).repaired  # verifying alone changes nothing

    repaired = verify_store(str(store), repair=True)
    assert repaired.repaired and repaired.damaged == ((2, 3),)
    assert not (store / "_job" / "done" / "c" / "2" / "3").exists()
    assert read_status(str(store))["status"] == "interrupted"
    summary = run_layers(layers, input=source, output=str(store), resume=True, client=client)
    assert (summary.blocks_computed, summary.blocks_skipped) == (2, 18)
    np.testing.assert_array_equal(zarr.open_group(str(store), mode="r")["features"][...], features)
    assert verify_store(str(store)).clean


def test_repair_refused_while_running(finished):
    store = finished[0]
    _jobs.start_job(open_output_group(str(store), "r+"), owner=_jobs.new_owner(), fingerprint="f" * 64,
                    blocks_total=20)
    with pytest.raises(StoreBusyError, match="still running"):
        verify_store(str(store), repair=True)
    assert verify_store(str(store)).clean  # a read-only check is always allowed
