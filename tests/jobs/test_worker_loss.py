"""Jobs outlive any one worker (issue 23, D13), on real worker processes under their nannies.

* the only worker of a cluster -- the one holding the job's shared data (layers, plan) -- is
  killed with SIGKILL in the middle of a job; its nanny starts a new one: the job completes and
  its result is bit for bit the one of an uninterrupted run;
* a block that needs more memory than the worker's limit: the nanny kills the worker each time;
  the job fails with one line that names the worker and its memory limit.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from support.procs import local_process_client, marked_blocks, wait_for
from support.stores import random_input

from featuremap.engine.layers import ConvLayer
from featuremap.errors import JobError
from featuremap.jobs.run import run_layers
from featuremap.jobs.state import read_status

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
def nanny_cluster() -> Iterator[Any]:
    with local_process_client(1) as client:
        yield client


def _big_block(tmp_path: Path, seed: int) -> tuple[str, list]:
    """One 2048 x 2048 block of 64 features (1 GiB of output, seconds of work) and its layers."""
    source, _ = random_input(tmp_path / "in.zarr", (1, 2048, 2048), (1, 2048, 2048), seed=seed)
    weights = np.random.default_rng(seed).standard_normal((64, 1, 3, 3))
    return source, [ConvLayer.create(weights, padding="same")]


#: Blocks of :func:`test_job_survives_the_sigkill_of_its_only_worker`: 120 x 120 in 6 x 6.
BLOCKS = 400


def _features(store: Path) -> np.ndarray:
    return zarr.open_group(str(store), mode="r")["features"][...]


def _layers(seed: int) -> list:
    weights = np.random.default_rng(seed).standard_normal((4, 1, 5, 5))
    return [ConvLayer.create(weights, padding="same", activation="relu")]


def test_job_survives_the_sigkill_of_its_only_worker(tmp_path, nanny_cluster, client):
    source, _ = random_input(tmp_path / "in.zarr", (1, 120, 120), (1, 60, 60), seed=5)
    layers = _layers(5)
    reference = tmp_path / "reference.zarr"
    run_layers(layers, input=source, output=str(reference), out_chunks=(6, 6), client=client)
    output = tmp_path / "out.zarr"
    outcome: dict = {}

    def job() -> None:
        try:
            outcome["summary"] = run_layers(
                layers, input=source, output=str(output), out_chunks=(6, 6), client=nanny_cluster
            )  # 400 small blocks: the worker is killed with most of them still to do
        except BaseException as error:  # reported by the assertion below
            outcome["error"] = error

    thread = threading.Thread(target=job)
    thread.start()
    wait_for(lambda: marked_blocks(output) > 40, 120, "the first done-markers")
    [pid] = nanny_cluster.run(os.getpid).values()
    os.kill(pid, signal.SIGKILL)
    done_at_kill = marked_blocks(output)
    thread.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")
    assert done_at_kill < BLOCKS, "the job ended before its worker was killed"
    assert [pid] != list(nanny_cluster.run(os.getpid).values())  # a new worker process
    assert outcome["summary"].status == "complete"
    assert read_status(str(output))["blocks_done"] == BLOCKS
    # read with Zarr itself: a Dask array of their small chunks would compute on a cluster
    np.testing.assert_array_equal(_features(output), _features(reference))


def test_a_block_over_the_memory_limit_names_the_worker_and_its_memory(tmp_path):
    import dask.config

    source, layers = _big_block(tmp_path, 6)  # 1 GiB of output for a worker limited to 400 MiB
    with (
        # the first death fails the block (Dask's default retries it on 3 more new workers)
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        local_process_client(1, memory_limit="400MiB") as client,
        pytest.raises(JobError) as failed,
    ):
        run_layers(
            layers,
            input=source,
            output=str(tmp_path / "out.zarr"),
            out_chunks=(2048, 2048),
            client=client,
        )
    message = str(failed.value)
    assert "\n" not in message
    assert "worker tcp://127.0.0.1:" in message
    assert "memory limit of 400 MiB" in message
    status = read_status(str(tmp_path / "out.zarr"))
    assert status["status"] == "failed"
    assert "memory limit" in status["error"]


def test_a_worker_killed_by_a_signal_is_named_with_the_signal(tmp_path):
    import dask.config

    source, layers = _big_block(tmp_path, 7)  # seconds of work: time to kill its worker
    outcome: dict = {}
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        local_process_client(1) as client,
    ):

        def job() -> None:
            try:
                run_layers(
                    layers,
                    input=source,
                    output=str(tmp_path / "out.zarr"),
                    out_chunks=(2048, 2048),
                    client=client,
                )
            except BaseException as error:  # checked below
                outcome["error"] = error

        thread = threading.Thread(target=job)
        thread.start()
        wait_for(
            lambda: any(
                "block" in str(key) for keys in client.processing().values() for key in keys
            ),
            60,
            "the block's task on the worker",
        )
        [pid] = client.run(os.getpid).values()
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=120)
    message = str(outcome.get("error"))
    assert isinstance(outcome.get("error"), JobError), message
    assert "\n" not in message
    assert f"(pid {pid} on 127.0.0.1)" in message
    assert "was killed by SIGKILL" in message
