"""Jobs that survive failure, with real processes: the CLI killed with SIGKILL, the scheduler
killed under a submitted job, a chunk corrupted on disk, two jobs started into one store.

Every recovered result is compared bit for bit with an uninterrupted run of the same pipeline
(a killed worker is covered by ``jobs/test_cluster.py``). The killed run is repeated on a
sharded store (a block is then a shard of two chunks, written by one task).

The killed, submitted and contested commands are real processes; the reference runs, ``status``,
``verify`` and the resumes run in this process (:func:`support.cli.run_cli`), on a threaded local
cluster: the result does not depend on the kind of cluster (threaded and process workers write
identical blocks, ``jobs/test_run.py``), and a process cluster costs seconds to start and stop.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from support.cli import run_cli
from support.procs import (
    dask_cluster,
    featuremap,
    kill_group,
    marked_blocks,
    start_featuremap,
    wait_for,
)

from featuremap.engine.stack import apply_stack
from featuremap.io import OutputStore
from featuremap.pipeline.pipeline import load_pipeline

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

#: 256 x 256 output in 8 x 16 blocks: 512 small blocks, a job of a few seconds on 2 workers.
PIPELINE = """\
name: slow
input: {{store: {input}}}
output: {{store: {output}, chunks: [8, 16]{shards}}}
layers:
  - conv: {{bank: {{type: file, path: w.npy}}, padding: same, activation: relu}}
"""
#: Blocks of each layout: 8 x 16 chunks, or shards of 8 x 32 (two chunks, one task each).
LAYOUTS = {"chunks": ("", 512), "shards": (", shards: [8, 32]", 256)}
#: Blocks done before a job is killed (most are still to run).
STARTED = 8


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> Callable[[str], dict]:
    """``references(layout)``: the pipeline of a layout and its uninterrupted result, made once per
    layout in this module (the tests that take no layout share the unsharded one)."""
    made: dict[str, dict] = {}

    def reference(layout: str) -> dict:
        if layout not in made:
            made[layout] = _reference(layout, tmp_path_factory)
        return made[layout]

    return reference


@pytest.fixture
def job(request, references) -> dict:
    """The pipeline and its uninterrupted result (``reference``, a complete store), unsharded
    unless a test asks for ``shards`` (indirect parametrization)."""
    return references(getattr(request, "param", "chunks"))


def _reference(layout: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    shards, blocks = LAYOUTS[layout]
    folder = tmp_path_factory.mktemp(f"job-{layout}")
    rng = np.random.default_rng(5)
    data = rng.random((1, 256, 256), dtype=np.float32)
    zarr.create_array(str(folder / "in.zarr"), data=data, chunks=(1, 64, 64))
    np.save(folder / "w.npy", rng.standard_normal((8, 1, 7, 7)).astype(np.float32))
    pipeline = folder / "p.yaml"
    pipeline.write_text(
        PIPELINE.format(input=folder / "in.zarr", output=folder / "reference.zarr", shards=shards)
    )
    summary = json.loads(_ok("run", pipeline, "--workers", "2", "--threads", "--json").stdout)
    assert summary["blocks_computed"] == blocks
    if shards:
        assert zarr.open_group(str(folder / "reference.zarr"))["features"].shards == (8, 8, 32)
    reference = _features(folder / "reference.zarr")
    layers = load_pipeline(pipeline).build_layers(1)
    np.testing.assert_allclose(reference, apply_stack(layers, data), rtol=1e-4, atol=1e-4)
    return {"folder": folder, "pipeline": pipeline, "reference": reference, "blocks": blocks}


def _ok(*args: object) -> object:
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    return result


def _features(store: Path) -> np.ndarray:
    return zarr.open_group(str(store), mode="r")["features"][...]


def _status(store: Path) -> dict:
    return json.loads(_ok("status", store, "--json").stdout)


def _resume(job: dict, store: Path, *extra: object) -> dict:
    summary = json.loads(
        _ok("run", job["pipeline"], "--output", store, "--resume", "--json", *extra).stdout
    )
    assert summary["status"] == "complete"
    assert summary["blocks_total"] == job["blocks"]
    np.testing.assert_array_equal(_features(store), job["reference"])  # bit for bit
    assert _ok("verify", store).stdout.rstrip().endswith("ok: no damage found")
    return summary


@pytest.mark.parametrize("job", list(LAYOUTS), indirect=True)
def test_sigkill_of_run_then_resume(job, tmp_path):
    store = tmp_path / "killed.zarr"
    process = start_featuremap(
        "run", job["pipeline"], "--output", store, "--workers", "2", log=tmp_path / "run.log"
    )
    try:
        wait_for(lambda: marked_blocks(store) > STARTED, 120, "the first done-markers")
    finally:
        kill_group(process)  # the CLI and its local cluster's workers, without any cleanup
    done = marked_blocks(store)
    assert STARTED < done < job["blocks"], "the job should have been killed midway"
    status = _status(store)  # the owner process is gone: interrupted at once, no heartbeat wait
    assert (status["status"], status["blocks_done"], status["blocks_total"]) == (
        "interrupted",
        done,
        job["blocks"],
    )

    refused = run_cli("run", job["pipeline"], "--output", store)
    assert refused.returncode == 2
    assert "--resume" in refused.stderr
    summary = _resume(job, store, "--workers", "2", "--threads")
    assert summary["blocks_skipped"] >= done
    assert summary["blocks_skipped"] + summary["blocks_computed"] == job["blocks"]


def test_scheduler_killed_under_a_submitted_job(job, tmp_path):
    store = tmp_path / "submitted.zarr"
    with dask_cluster(tmp_path) as (address, processes):
        submitted = featuremap(  # a process: the job must go on after it has exited
            "submit", job["pipeline"], "--output", store, "--scheduler", address, "--json"
        )
        assert submitted.returncode == 0, submitted.stderr
        assert json.loads(submitted.stdout)["store"] == str(store)
        wait_for(
            lambda: marked_blocks(store) > STARTED, 120, "the submitted job's first done-markers"
        )
        kill_group(processes[0])  # the scheduler
        wait_for(lambda: _status(store)["status"] != "running", 60, "status to notice the lost job")
        for worker in processes[1:]:  # not waited on to close: the job is lost already
            kill_group(worker)
    status = _status(store)
    assert status["status"] == "interrupted", status
    assert status["blocks_done"] < job["blocks"], status
    done = marked_blocks(store)
    summary = _resume(job, store, "--workers", "2", "--threads")  # a new cluster finishes it
    assert summary["blocks_skipped"] == done


def test_corrupted_and_deleted_chunks(job, tmp_path):
    store = tmp_path / "damaged.zarr"
    shutil.copytree(job["folder"] / "reference.zarr", store)
    corrupted = store / "features" / "c" / "0" / "3" / "5"  # (feature, y, x) chunks
    raw = bytearray(corrupted.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit
    corrupted.write_bytes(bytes(raw))
    (store / "features" / "c" / "0" / "30" / "1").unlink()  # marked done, chunk gone

    found = run_cli("verify", store)
    assert found.returncode == 1, found.stderr
    assert "corrupted chunks: (3,5)" in found.stdout
    assert "marked done but no chunk: (30,1)" in found.stdout
    report = json.loads(run_cli("verify", store, "--json").stdout)
    assert (report["corrupted"], report["missing"], report["clean"]) == ([[3, 5]], [[30, 1]], False)
    assert "checksum" in report["errors"]["3,5"].lower()

    repaired = run_cli("verify", store, "--repair")
    assert repaired.returncode == 1
    assert "repaired" in repaired.stdout
    assert not corrupted.exists()
    assert (3, 5) not in OutputStore.open(str(store)).done_blocks()
    assert _status(store)["status"] == "interrupted"
    summary = _resume(job, store, "--workers", "1", "--threads")
    assert (summary["blocks_computed"], summary["blocks_skipped"]) == (2, job["blocks"] - 2)


def test_two_runs_into_one_store(job, tmp_path):
    store = tmp_path / "contested.zarr"
    runs = [
        start_featuremap(
            "run",
            job["pipeline"],
            "--output",
            store,
            "--workers",
            "2",
            log=tmp_path / f"run{i}.log",
        )
        for i in range(2)
    ]
    try:
        codes = sorted(process.wait(timeout=240) for process in runs)
    finally:
        for process in runs:
            kill_group(process)
    assert codes == [0, 2]
    loser = next(
        (tmp_path / f"run{i}.log").read_text() for i in range(2) if runs[i].returncode == 2
    )
    lines = [line for line in loser.splitlines() if line.startswith("featuremap: error:")]
    assert len(lines) == 1, loser
    assert all(line.startswith("featuremap: ") for line in loser.splitlines()), loser
    assert lines[0].startswith("featuremap: error: output store"), loser
    assert "running" in lines[0] or "another job" in lines[0]
    assert _status(store)["status"] == "complete"
    np.testing.assert_array_equal(_features(store), job["reference"])
    assert not store.with_name(store.name + ".lock").exists()
