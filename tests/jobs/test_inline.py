"""Small local jobs run on threads of the calling process without Dask's scheduler
(``featuremap.cluster.inline``): the same features, failures, cancelling and resuming as on a
cluster, and nothing of ``distributed`` imported."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from support.procs import fresh_python

import featuremap
from featuremap.apps.jobs import cancel
from featuremap.engine.layers import ConvLayer
from featuremap.errors import JobCancelledError, JobError
from featuremap.io.sizing import OutputOptions
from featuremap.jobs.run import run_layers
from featuremap.jobs.state import read_status

#: Four Gabor filters on 4 x 4 blocks of 32^2 (16 blocks: the most a job runs inline).
PIPELINE = {
    "layers": [
        {
            "conv": {
                "bank": {"type": "gabor", "orientations": 4, "frequencies": [0.2]},
                "padding": "same",
            }
        }
    ],
    "output": {"chunks": [1, 32, 32]},
}

#: A small job through the command line in a fresh interpreter: what it imported.
COMMAND = """
import sys
from featuremap.cli.main import main
code = main(["run", {pipeline!r}, "--input", {source!r}, "--output", {output!r}, "--json"])
print(code, "distributed" in sys.modules, "dask.array" in sys.modules)
"""


def _features(store: str) -> np.ndarray:
    return zarr.open_group(store, mode="r")["features"][...]


def test_a_small_job_imports_nothing_of_distributed(tmp_path, input_store):
    source = input_store(np.random.default_rng(1).random((1, 128, 128), dtype=np.float32))
    pipeline = tmp_path / "p.json"  # JSON is YAML
    pipeline.write_text(json.dumps(PIPELINE))
    output = str(tmp_path / "out.zarr")
    printed = fresh_python(COMMAND.format(pipeline=str(pipeline), source=source, output=output))
    *summary, imported = printed.strip().splitlines()
    assert imported.split() == ["0", "False", "False"]
    assert json.loads("\n".join(summary))["dashboard"] is None
    assert read_status(output)["status"] == "complete"


def test_inline_threads_write_what_a_cluster_writes(tmp_path, input_store):
    """Bit for bit the features of the same job on a threaded cluster with its scheduler."""
    source = input_store(np.random.default_rng(2).random((1, 128, 128), dtype=np.float32))
    written = {}
    for processes in (None, False):  # None: inline, a small job left to itself
        output = str(tmp_path / f"{processes}.zarr")
        summary = featuremap.run(
            PIPELINE, input=source, output=output, workers=2, processes=processes
        )
        assert summary.blocks_computed == 16
        assert (summary.dashboard is None) == (processes is None)
        workers = featuremap.open(output).attrs["devices"]["workers"]
        assert (list(workers) == ["inline"]) == (processes is None)  # provenance names it
        written[processes] = _features(output)
    np.testing.assert_array_equal(written[None], written[False])


def test_a_failing_block_fails_the_job_and_marks_the_store(tmp_path, input_store):
    source = input_store(
        np.random.default_rng(3).random((1, 40, 40), dtype=np.float32), (1, 20, 20)
    )
    (tmp_path / "in.zarr" / "c" / "0" / "1" / "1").write_bytes(b"\x00garbage, not zstd")
    output = tmp_path / "out.zarr"
    layer = ConvLayer.create(np.ones((2, 1, 3, 3), np.float32), padding=1)
    with pytest.raises(JobError, match=r"failed after \d of 4 blocks: .*unreadable input chunk"):
        run_layers(
            [layer],
            input=source,
            output=str(output),
            options=OutputOptions(chunks=(20, 20), codec="lz4"),  # auto would sample the chunk
        )
    status = read_status(str(output))
    assert status["status"] == "failed"
    assert status["blocks_done"] < status["blocks_total"] == 4


def test_cancelled_while_running_then_resumed_bit_exact(tmp_path, input_store):
    """``featuremap cancel`` reaches an inline job through its store: no block starts after it,
    the store reads ``cancelled``, and ``--resume`` finishes it as an uninterrupted run would."""
    source = input_store(np.random.default_rng(4).random((1, 128, 128), dtype=np.float32))
    whole = str(tmp_path / "whole.zarr")
    featuremap.run(PIPELINE, input=source, output=whole, workers=1)
    output = str(tmp_path / "out.zarr")
    done_when_cancelled: list[int] = []

    def cancel_once(done: int, total: int) -> None:
        if done and not done_when_cancelled:
            cancel(output)
            done_when_cancelled.append(done)

    with pytest.raises(JobCancelledError):
        featuremap.run(PIPELINE, input=source, output=output, workers=1, progress=cancel_once)
    status = read_status(output)
    assert status["status"] == "cancelled"
    # the one worker thread had started at most the block after the first when it was told
    assert status["blocks_done"] <= done_when_cancelled[0] + 1 < 16
    resumed = featuremap.run(PIPELINE, input=source, output=output, resume=True)
    assert resumed.blocks_skipped == status["blocks_done"]
    np.testing.assert_array_equal(_features(output), _features(whole))
