"""A cluster shared by a team (DESIGN section 9), on a real ``dask scheduler`` and two
``dask worker`` processes on 127.0.0.1, driven through the ``featuremap`` command.

Three people submit a job each at once (three processes), with nothing but
``DASK_SCHEDULER_ADDRESS`` set; ``featuremap jobs`` lists them, their task keys name them, a busy
store's message says to ``featuremap cancel``; one job is cancelled: none of its blocks is
written after 5 s while the others complete; its log is read; it then resumes to the others'
result, bit for bit; and the cluster is left holding nothing of any of them. The commands after
the three submissions run in this process (:func:`support.cli.run_cli`, the scheduler in Dask's
configuration, where that variable puts it in a new process): a process costs seconds of
start-up on a loaded machine.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from support.cli import run_cli
from support.procs import ENV, dask_cluster, marked_blocks, wait_for

from featuremap.errors import StoreBusyError
from featuremap.jobs.run import submit
from featuremap.jobs.state import read_status

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

#: 256 x 192 output in 8 x 8 blocks: 768 small blocks a job, seconds each on 2 workers
#: (a chunk per feature, each block one shard: slow enough writes that a job is still running
#: when it is cancelled).
PIPELINE = """\
name: texture
input: {{store: {input}}}
output: {{chunks: [1, 8, 8]}}
layers:
  - conv: {{bank: {{type: file, path: w.npy}}, padding: same, activation: relu}}
"""
PEOPLE = ("alice", "bob", "carol")
BLOCKS = 32 * 24
#: How long a cancelled job may go on writing.
STOP_S = 5.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[str, Any]]:
    """The scheduler's address and a client of it, its two workers connected."""
    from distributed import Client

    with (
        dask_cluster(tmp_path_factory.mktemp("cluster"), workers=2) as (address, _),
        Client(address, timeout="30s") as client,
    ):
        client.wait_for_workers(2, timeout=60)
        yield address, client


def _pipeline(folder: Path) -> Path:
    rng = np.random.default_rng(7)
    zarr.create_array(
        str(folder / "in.zarr"),
        data=rng.random((1, 256, 192), dtype=np.float32),
        chunks=(1, 64, 64),
    )
    np.save(folder / "w.npy", rng.standard_normal((8, 1, 7, 7)).astype(np.float32))
    zarr.create_array(str(folder / "small.zarr"), data=rng.random((1, 32, 32), dtype=np.float32))
    (folder / "short.yaml").write_text(PIPELINE.format(input=folder / "small.zarr"))  # 16 blocks
    pipeline = folder / "p.yaml"
    pipeline.write_text(PIPELINE.format(input=folder / "in.zarr"))
    return pipeline


def _env(address: str, person: str = "alice") -> dict[str, str]:
    """The environment of ``person``'s commands: the scheduler from Dask's configuration."""
    return {**ENV, "DASK_SCHEDULER_ADDRESS": address, "USER": person, "LOGNAME": person}


def _ok(address: str, *args: object, person: str = "alice") -> str:
    """``featuremap ARGS`` run by ``person`` in this process, the scheduler from Dask's
    configuration (``scheduler-address``, what ``DASK_SCHEDULER_ADDRESS`` sets): its stdout."""
    import dask.config

    with dask.config.set({"scheduler-address": address}):
        result = run_cli(*args, env=_env(address, person))
    assert result.returncode == 0, result.stderr
    return result.stdout


def _jobs(address: str, *flags: str) -> dict[str, dict]:
    return {job["id"]: job for job in json.loads(_ok(address, "jobs", "--json", *flags))}


def _chunk_times(store: Path) -> dict[str, int]:
    """Every chunk file of the features and its modification time (ns)."""
    return {str(path): path.stat().st_mtime_ns for path in (store / "features").rglob("c/**/*")}


def _wait_complete(store: Path) -> None:
    wait_for(lambda: read_status(str(store))["status"] == "complete", 120, f"the job of {store}")


def _keys(client: Any) -> list[str]:
    """The keys the scheduler holds (a task, a future's data)."""
    return [
        str(key)
        for key in client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks))
    ]


def _submit_at_once(pipeline: Path, folder: Path, address: str) -> dict[str, str]:
    """Each person submits a job to ``folder/<person>.zarr`` at the same moment: their ids."""
    commands = {
        person: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "featuremap.cli.main",
                "submit",
                pipeline,
                "--output",
                folder / f"{person}.zarr",
                "--json",
            ],
            env=_env(address, person),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for person in PEOPLE
    }
    ids = {}
    for person, command in commands.items():
        out, err = command.communicate(timeout=120)
        assert command.returncode == 0, err
        submitted = json.loads(out)
        assert submitted["dashboard"].startswith("http")
        ids[person] = submitted["id"]
    return ids


def test_three_jobs_listed_one_cancelled_and_resumed(tmp_path, cluster):
    address, client = cluster
    pipeline = _pipeline(tmp_path)
    ids = _submit_at_once(pipeline, tmp_path, address)
    listed = _jobs(address)
    host = socket.gethostname()
    for person in PEOPLE:
        matches = [job for job_id, job in listed.items() if job_id.startswith(ids[person])]
        assert len(matches) == 1, json.dumps([ids, listed], indent=1)
        [job] = matches
        assert job["submitter"] == f"{person}@{host}"
        assert job["pipeline"] == "texture"
        assert job["state"] in ("queued", "running")
        assert job["blocks_total"] == BLOCKS
    carol = tmp_path / "carol.zarr"
    wait_for(lambda: marked_blocks(carol) > 20, 60, "carol's first blocks")
    assert any(key.startswith(f"featuremap_{ids['carol']}-block-") for key in _keys(client))
    with pytest.raises(StoreBusyError) as busy:
        submit(pipeline, scheduler=address, output=str(carol), overwrite=True)
    assert f"featuremap cancel {ids['carol']}" in str(busy.value)
    assert "process" not in str(busy.value)

    _ok(address, "cancel", ids["carol"], person="bob")
    cancelled_at = time.time_ns()
    assert read_status(str(carol))["status"] == "cancelled"
    # a short job of higher priority does not wait behind the long ones' backlog: it finishes
    # before the last of them (the stores' own finish times)
    dave = tmp_path / "dave.zarr"
    _ok(
        address,
        "submit",
        tmp_path / "short.yaml",
        "--output",
        dave,
        "--priority",
        10,
        person="dave",
    )
    _wait_complete(dave)
    for person in ("alice", "bob"):
        _wait_complete(tmp_path / f"{person}.zarr")
    last_long = max(read_status(str(tmp_path / f"{p}.zarr"))["finished"] for p in ("alice", "bob"))
    assert read_status(str(dave))["finished"] <= last_long
    late = {path: t for path, t in _chunk_times(carol).items() if t > cancelled_at + STOP_S * 1e9}
    assert not late, f"{len(late)} chunks written after the cancel"
    assert read_status(str(carol))["blocks_done"] < BLOCKS

    history = _jobs(address, "--all")
    states = {job["submitter"].split("@")[0]: job["state"] for job in history.values()}
    assert states == {
        "alice": "complete",
        "bob": "complete",
        "carol": "cancelled",
        "dave": "complete",
    }
    assert {job["submitter"].split("@")[0]: job["priority"] for job in history.values()}[
        "dave"
    ] == 10
    assert not _jobs(address)  # none active
    log = _ok(address, "logs", ids["carol"])
    assert "submitted by carol@" in log
    assert f"cancelled by bob@{host}" in log

    _ok(address, "run", pipeline, "--output", carol, "--resume")
    alice = zarr.open_group(str(tmp_path / "alice.zarr"), mode="r")["features"][...]
    np.testing.assert_array_equal(zarr.open_group(str(carol), mode="r")["features"][...], alice)
    assert "complete" in _ok(address, "logs", carol)
    # nothing the jobs used stays on the cluster: no task, no scattered weights, no erred driver
    wait_for(lambda: not _keys(client), 15, "the cluster to forget the jobs' tasks and data")
