"""``featuremap.jobs.blocks``: the worker side of a job (its block tasks are run by the job tests,
``jobs/test_run.py`` and the cluster tests).

A Dask worker unpickles a job's :class:`BlockJob` and runs :func:`run_block` for its blocks, so
that path must stay light: in a fresh interpreter, unpickling the job and computing a block of
the default pipeline loads neither ``dask.array`` nor ``pandas`` nor ``xarray`` nor ``scipy``
(2.4 s of imports on a worker's first task when they were loaded).
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import zarr
from support import REPO
from support.procs import ENV
from support.stores import write_input

from featuremap.apps.demo import default_pipeline_path
from featuremap.jobs import state
from featuremap.jobs.blocks import BlockJob
from featuremap.jobs.execute import open_job
from featuremap.jobs.run import _plan_pipeline
from featuremap.jobs.tracking import new_ticket
from featuremap.pipeline.pipeline import load_pipeline

HEAVY = ("dask.array", "pandas", "xarray", "scipy")

#: What a worker does with a block task: unpickle the job, run the block.
PROBE = f"""
import json, pickle, sys
job = pickle.loads(open(sys.argv[1], "rb").read())
from featuremap.jobs.blocks import run_block
stats = run_block(job, tuple(json.loads(sys.argv[2])))
print(json.dumps({{
    "file": sys.modules["featuremap.jobs.blocks"].__file__,
    "loaded": [name for name in {HEAVY!r} if name in sys.modules],
}}))
"""


def _default_job(tmp_path) -> tuple[BlockJob, tuple[int, ...]]:
    """A planned and opened job of the default pipeline on a small image, and its first block."""
    data = np.random.default_rng(5).random((1, 1, 96, 96), dtype=np.float32)
    source = write_input(tmp_path / "in.zarr", data, (1, 1, 48, 48))
    pipeline = load_pipeline(default_pipeline_path()).with_overrides(
        input=source, output=str(tmp_path / "out.zarr")
    )
    plan = _plan_pipeline(pipeline, resume=False, overwrite=False, device="cpu")
    owner = state.new_owner()
    open_job(plan, owner, new_ticket(plan, owner, scheduler=None, priority=0).to_dict())
    job = BlockJob.create(
        store=plan.store,
        token=owner.id,
        source=plan.source,
        stack=plan.stack,
        layout=plan.layout,
        device=None,
    )
    return job, (0,) * len(plan.layout.grid_shape)


def test_a_block_task_loads_no_dask_array_pandas_xarray_or_scipy(tmp_path):
    job, block = _default_job(tmp_path)
    pickled = tmp_path / "job.pickle"
    pickled.write_bytes(pickle.dumps(job))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(pickled), json.dumps(block)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ENV,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["file"] == str(REPO / "featuremap" / "jobs" / "blocks.py")  # this tree's module
    assert report["loaded"] == []
    written = zarr.open_group(job.store, mode="r")["features"]
    assert np.any(written[(0,) * (written.ndim - 2)] != 0)  # the block was computed and written
