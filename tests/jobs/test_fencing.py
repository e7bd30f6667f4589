"""Fencing with real, stopped processes (SIGSTOP / SIGCONT): a job that lost its store never
writes to it again, and a live job on the same host is never declared dead.

Job A runs a 1024-block pipeline; it is stopped midway and its heartbeat made stale (as if the
stop had lasted longer than the heartbeat timeout). On the same host, job B is refused: A's
process is alive. On another host (A runs in a UTS namespace under another hostname), B takes
the store over with ``--overwrite`` and a different pipeline (another feature count); A, once
continued, must stop without writing one chunk, marker or attribute: B's store stays bit-exact
and verifies clean. Runs on a local cluster and on a ``dask scheduler`` with workers.

Job A is a real process (it is stopped and continued); job B, ``status`` and ``verify`` run in
this process (:func:`support.cli.run_cli`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import zarr
from support.cli import run_cli
from support.procs import (
    UTS_PREFIX,
    age_heartbeat,
    dask_cluster,
    marked_blocks,
    on_other_host,
    start,
    wait_for,
)

from featuremap.jobs.state import HEARTBEAT_TIMEOUT_S

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PIPELINE = """\
name: {name}
input: {{store: {input}}}
output: {{store: {output}, chunks: [{chunk}, {chunk}]}}
layers:
  - conv: {{bank: {{type: file, path: {weights}}}, padding: same, activation: relu}}
"""
BLOCKS_A = 1024  # 256 x 256 in 8 x 8 blocks: several seconds on one worker
CLI = [sys.executable, "-m", "featuremap.cli.main"]


@pytest.fixture(scope="module")
def jobs(tmp_path_factory) -> dict:
    """Pipelines A (8 features, 1024 blocks) and B (3 features, 16 blocks), and B's result."""
    folder = tmp_path_factory.mktemp("fencing")
    rng = np.random.default_rng(8)
    zarr.create_array(
        str(folder / "in.zarr"),
        data=rng.random((1, 256, 256), dtype=np.float32),
        chunks=(1, 64, 64),
    )
    paths = {}
    for name, features, chunk in (("a", 8, 8), ("b", 3, 64)):
        np.save(folder / f"{name}.npy", rng.standard_normal((features, 1, 7, 7)).astype(np.float32))
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(
            PIPELINE.format(
                name=name,
                input=folder / "in.zarr",
                output=folder / f"{name}-reference.zarr",
                chunk=chunk,
                weights=folder / f"{name}.npy",
            )
        )
    reference = run_cli("run", paths["b"], "--workers", "1")
    assert reference.returncode == 0, reference.stderr
    paths["reference_b"] = zarr.open_group(str(folder / "b-reference.zarr"), mode="r")["features"][
        ...
    ]
    return paths


def _status(store: Path) -> dict:
    result = run_cli("status", store, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _stop_midway(process, store: Path, blocks: int = BLOCKS_A) -> None:
    """Stop job A's own process (its cluster's workers finish the few blocks in flight)."""
    wait_for(lambda: marked_blocks(store) > 30, 120, "job A's first done-markers")
    os.kill(process.pid, signal.SIGSTOP)
    time.sleep(1.0)  # the blocks in flight land, under A's ownership
    assert marked_blocks(store) < blocks, "job A finished before it could be stopped"
    age_heartbeat(store, HEARTBEAT_TIMEOUT_S + 5)


def _cluster_args(address: str | None) -> list[str]:
    return ["--scheduler", address] if address else ["--workers", "1"]


def test_live_job_on_this_host_is_never_taken_over(jobs, tmp_path):
    store = tmp_path / "shared.zarr"
    job_a = start(
        [*CLI, "run", jobs["a"], "--output", store, "--workers", "1", "--region", "y=0:128"],
        tmp_path / "a.log",
    )  # half the input: A runs to its end here
    try:
        _stop_midway(job_a, store, BLOCKS_A // 2)
        assert _status(store)["status"] == "running"  # stale heartbeat, but the process lives
        refused = run_cli("run", jobs["b"], "--output", store, "--overwrite")
        assert refused.returncode == 2, refused.stderr
        assert "is alive (perhaps stopped)" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    finally:
        os.kill(job_a.pid, signal.SIGCONT)
    assert job_a.wait(timeout=300) == 0, (tmp_path / "a.log").read_text()
    status = _status(store)
    assert (status["status"], status["blocks_done"]) == ("complete", BLOCKS_A // 2)
    assert run_cli("verify", store).returncode == 0


@pytest.mark.skipif(UTS_PREFIX is None, reason="no UTS namespace (unshare) on this machine")
@pytest.mark.parametrize("cluster", ["local", "scheduler"])
def test_job_that_lost_its_store_writes_nothing(jobs, tmp_path, cluster):
    store = tmp_path / "taken.zarr"
    with (
        dask_cluster(tmp_path) if cluster == "scheduler" else nullcontext((None, [])) as (
            address,
            _,
        )
    ):
        job_a = start(
            on_other_host([*CLI, "run", jobs["a"], "--output", store, *_cluster_args(address)]),
            tmp_path / "a.log",
        )
        try:
            _stop_midway(job_a, store)
            assert _status(store)["status"] == "interrupted"  # another host, heartbeat stale
            taken = run_cli(
                "run",
                jobs["b"],
                "--output",
                store,
                "--overwrite",
                "--json",
                *_cluster_args(address),
            )
            assert taken.returncode == 0, taken.stderr
            owner_b = _status(store)["owner"]
        finally:
            os.kill(job_a.pid, signal.SIGCONT)
        assert job_a.wait(timeout=120) == 1  # A notices it was fenced and stops
    log = (tmp_path / "a.log").read_text()
    assert "belongs to another job" in log, log
    assert "Traceback" not in log

    status = _status(store)
    assert (status["status"], status["owner"]) == ("complete", owner_b)
    features = zarr.open_group(str(store), mode="r")["features"][...]
    np.testing.assert_array_equal(features, jobs["reference_b"])  # not one chunk of A's
    verified = run_cli("verify", store)
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.rstrip().endswith("ok: no damage found")
