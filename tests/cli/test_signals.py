"""SIGTERM is SIGINT: a ``run`` stopped either way says so in one line, exits 130 (SIGINT) or 143
(SIGTERM), leaves the store ``interrupted`` (not ``running``), prints no leaked-resource warning,
and ``--resume`` then finishes it bit for bit like an uninterrupted run.

The signalled ``run`` is a real process (with its local cluster's worker processes, or threads);
the reference run, ``status`` and the resumes run in this process (:func:`support.cli.run_cli`) on
a threaded cluster: what they check does not depend on the kind of cluster (threaded and process
workers write identical blocks, ``jobs/test_run.py``), and each process cluster costs seconds."""

from __future__ import annotations

import json
import os
import re
import signal

import numpy as np
import pytest
import zarr
from support.cli import run_cli
from support.procs import start_featuremap, wait_for
from support.stores import random_input

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PIPELINE = """\
layers:
  - conv: {bank: {type: gabor, orientations: 4, frequencies: [0.1, 0.25]}, padding: same}
output: {chunks: [1, 32, 32]}
"""
BLOCKS = 256  # 512 x 512 in 32 x 32 blocks, a chunk per feature: the signal comes after
STARTED = 8  # this many blocks, while most still have to run


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("signals")
    random_input(folder / "in.zarr", (512, 512), (64, 64), seed=6)
    (folder / "p.yaml").write_text(PIPELINE)
    reference = run_cli(
        "run", "p.yaml", "--input", "in.zarr", "--output", "reference.zarr", "--workers", "2",
        "--threads", cwd=folder,
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    return {"folder": folder, "reference": _features(folder / "reference.zarr")}


def _blocks_reported(log) -> int:
    """The blocks done in the last progress line ``featuremap: N/M blocks`` of a run's log."""
    counts = re.findall(r"^featuremap: (\d+)/\d+ blocks", log.read_text(), re.MULTILINE)
    return int(counts[-1]) if counts else 0


def _features(store) -> np.ndarray:
    return zarr.open_group(str(store), mode="r")["features"][...]


@pytest.mark.parametrize(
    ("signum", "code", "group", "kind"),
    [
        (signal.SIGTERM, 143, False, "--processes"),
        (signal.SIGINT, 130, False, "--processes"),
        (signal.SIGINT, 130, True, "--processes"),
        (signal.SIGINT, 130, True, "--threads"),
    ],
    ids=[
        "SIGTERM",
        "SIGINT",
        "Ctrl-C (SIGINT to the process group, workers included)",
        "Ctrl-C on a threaded local cluster",
    ],
)
def test_signal_stops_the_run_cleanly_and_resume_is_exact(job, tmp_path, signum, code, group, kind):
    folder, store, log = job["folder"], tmp_path / "stopped.zarr", tmp_path / "run.log"
    process = start_featuremap(
        "run", folder / "p.yaml", "--input", folder / "in.zarr", "--output", store,
        "--workers", "2", kind, log=log,
    )  # fmt: skip
    try:
        # the first progress line (~10 % done), not the done-markers: those are flushed once a
        # second, and a fast machine finishes this job within a second of that first flush
        wait_for(lambda: _blocks_reported(log) > STARTED, 120, "the first progress line")
        if group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        assert process.wait(timeout=60) == code
    finally:
        if process.poll() is None:
            process.kill()
    output = log.read_text()
    errors = [line for line in output.splitlines() if not line.startswith("featuremap: ")]
    assert errors == [], output  # no warnings, tracebacks or leaked semaphores: only our lines
    name = signal.Signals(signum).name
    assert f"featuremap: interrupted ({name}); finish with --resume" in output

    status = json.loads(run_cli("status", store, "--json").stdout)
    assert status["status"] == "interrupted"
    assert STARTED < status["blocks_done"] < BLOCKS
    resumed = run_cli(
        "run", folder / "p.yaml", "--input", folder / "in.zarr", "--output", store, "--resume",
        "--workers", "2", "--threads", "--json",
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["blocks_skipped"] == status["blocks_done"]
    np.testing.assert_array_equal(_features(store), job["reference"])


SMALL_JOB = """\
layers:
  - conv: {bank: {type: gabor, orientations: 8, frequencies: [0.04, 0.06]}, padding: same}
output: {chunks: [1, 512, 512]}
"""


def test_ctrl_c_stops_a_small_job_run_without_a_cluster(tmp_path):
    """A job of 16 blocks runs on threads of the ``featuremap`` process, no scheduler: Ctrl-C
    stops it as it stops a cluster's job, in one line, the store ``interrupted``."""
    random_input(tmp_path / "in.zarr", (2048, 2048), (256, 256), seed=7)
    (tmp_path / "p.yaml").write_text(SMALL_JOB)
    store, log = tmp_path / "stopped.zarr", tmp_path / "run.log"
    process = start_featuremap(
        "run", tmp_path / "p.yaml", "--input", tmp_path / "in.zarr", "--output", store, log=log
    )
    try:
        wait_for(lambda: _blocks_reported(log) >= 1, 120, "the first block")
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
    output = log.read_text()
    assert "dashboard" not in output  # no cluster was started
    assert [line for line in output.splitlines() if not line.startswith("featuremap: ")] == []
    assert "featuremap: interrupted (SIGINT); finish with --resume" in output
    status = json.loads(run_cli("status", store, "--json").stdout)
    assert status["status"] == "interrupted"
    assert 1 <= status["blocks_done"] < 16
