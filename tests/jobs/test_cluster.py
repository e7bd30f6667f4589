"""Jobs on a real cluster: a ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1
(connecting to a cluster, ``featuremap.cluster.client``, is ``cluster/test_client.py``).

Runs a job through ``scheduler=ADDRESS``, submits one that goes on without the caller, and kills
a worker with SIGKILL in the middle of a job: the job must still finish with the exact result.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from support.procs import dask_cluster, marked_blocks, wait_for
from support.stores import random_input

from featuremap.engine.layers import ConvLayer, PoolLayer
from featuremap.engine.stack import apply_stack
from featuremap.io import open_features
from featuremap.jobs.run import run_layers, submit
from featuremap.jobs.state import read_status

TOLERANCE = {"rtol": 2e-5, "atol": 2e-5}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[str, list]]:
    """``(address, [worker processes])``, the workers connected; every process is stopped
    afterwards. One for the module (a start-up is seconds): the test that kills a worker comes
    last (the others pass on one worker too, only slower)."""
    from distributed import Client

    with dask_cluster(tmp_path_factory.mktemp("cluster"), workers=2) as (address, processes):
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, processes[1:]  # processes[0] is the scheduler


def _layers(seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [
        ConvLayer.create(rng.standard_normal((4, 1, 5, 5)), padding="same", activation="relu"),
        PoolLayer.create("max", 2),
    ]


@pytest.mark.cluster
@pytest.mark.slow
def test_run_through_scheduler_address(tmp_path, cluster):
    address, _ = cluster
    source, data = random_input(tmp_path / "in.zarr", (1, 60, 70), (1, 25, 25), seed=1)
    layers = _layers(1)
    summary = run_layers(
        layers,
        input=source,
        output=str(tmp_path / "out.zarr"),
        scheduler=address,
        out_chunks=(8, 9),
    )
    assert summary.status == "complete"
    assert summary.blocks_computed == 16
    got = open_features(str(tmp_path / "out.zarr")).data.compute()
    np.testing.assert_allclose(got, apply_stack(layers, data), **TOLERANCE)


@pytest.mark.cluster
@pytest.mark.slow
def test_submit_returns_at_once_and_job_goes_on(tmp_path, cluster):
    address, _ = cluster
    source, data = random_input(tmp_path / "in.zarr", (1, 80, 90), (1, 30, 30), seed=2)
    rng = np.random.default_rng(2)
    np.save(tmp_path / "w.npy", rng.standard_normal((3, 1, 3, 3)).astype(np.float32))
    spec = {
        "name": "submitted",
        "input": {"store": source},
        "output": {"store": str(tmp_path / "out.zarr"), "chunks": [10, 10]},
        "layers": [
            {"conv": {"bank": {"type": "file", "path": str(tmp_path / "w.npy")}, "padding": 1}}
        ],
    }
    store = submit(spec, scheduler=address)
    assert store == str(tmp_path / "out.zarr")
    assert read_status(store)["status"] in ("queued", "running", "complete")
    wait_for(lambda: read_status(store)["status"] == "complete", 120, "the submitted job")
    from featuremap.pipeline.pipeline import load_pipeline

    expected = apply_stack(load_pipeline(spec).build_layers(1), data)
    np.testing.assert_allclose(open_features(store).data.compute(), expected, **TOLERANCE)
    assert read_status(store)["blocks_done"] == 72  # 80 x 90 in 10 x 10 blocks


@pytest.mark.cluster
@pytest.mark.slow
def test_job_survives_a_killed_worker(tmp_path, cluster):
    address, workers = cluster
    source, data = random_input(tmp_path / "in.zarr", (1, 192, 192), (1, 48, 48), seed=3)
    layers = _layers(3)
    output = tmp_path / "out.zarr"
    outcome: dict = {}

    def job() -> None:
        try:
            outcome["summary"] = run_layers(
                layers, input=source, output=str(output), scheduler=address, out_chunks=(4, 4)
            )  # 576 small blocks: a long job (about 200 done when the worker is killed)
        except BaseException as error:  # reported by the assertion below
            outcome["error"] = error

    thread = threading.Thread(target=job)
    thread.start()
    wait_for(lambda: marked_blocks(output) > 40, 120, "the first done-markers")
    workers[1].send_signal(signal.SIGKILL)
    done_at_kill = marked_blocks(output)
    thread.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")
    # the worker died mid-job
    assert workers[1].poll() is not None
    assert done_at_kill < 576
    summary = outcome["summary"]
    assert summary.status == "complete"
    assert summary.blocks_computed == summary.blocks_total == 576
    np.testing.assert_allclose(
        open_features(str(output)).data.compute(), apply_stack(layers, data), **TOLERANCE
    )
    assert read_status(str(output))["blocks_done"] == 576
