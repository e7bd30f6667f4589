"""The input is the one the job started with (README "Safety", D2): an input rewritten while
the job runs -- same metadata, other values -- fails the job with one line; the store never
reads ``complete`` with a result that mixes the old input and the new."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from support.stores import random_input

from featuremap.engine.layers import ConvLayer
from featuremap.errors import JobError
from featuremap.io import OutputStore
from featuremap.jobs import state
from featuremap.jobs.run import run_layers

pytestmark = pytest.mark.cluster


def _rewrite(source: str) -> None:
    """Same metadata and chunk sizes, other pixels (as a user's script re-running would)."""
    array = zarr.open_array(source, mode="r+")
    array[...] = 1.0 - array[...]


@pytest.mark.parametrize("when", ["first block", "last block"])
def test_an_input_rewritten_while_the_job_runs_fails_it(tmp_path, client, when):
    source, _ = random_input(tmp_path / "in.zarr", (1, 64, 64), (1, 32, 32), seed=3)
    layers = [ConvLayer.create(np.ones((2, 1, 3, 3)), padding="same")]
    store = tmp_path / "out.zarr"
    rewritten = []

    def progress(done: int, total: int) -> None:
        if not rewritten and done == (1 if when == "first block" else total):
            _rewrite(source)
            rewritten.append(done)

    with pytest.raises(JobError, match="changed while the job ran") as raised:
        run_layers(
            layers, input=source, output=str(store), out_chunks=(16, 16), client=client,
            progress=progress,
        )  # fmt: skip
    assert rewritten
    assert "\n" not in str(raised.value)
    assert state.job_status(OutputStore.open(str(store), "r"))["status"] == "failed"


def test_the_change_is_seen_along_the_way(tmp_path, client, monkeypatch):
    """Checked as blocks finish (here at every one), the job stops before its last block."""
    from featuremap.jobs import inputwatch

    monkeypatch.setattr(inputwatch, "CHECK_INTERVAL_S", 0.0)
    monkeypatch.setattr(inputwatch, "_COST_FACTOR", 0.0)
    source, _ = random_input(tmp_path / "in.zarr", (1, 64, 64), (1, 32, 32), seed=4)
    layers = [ConvLayer.create(np.ones((2, 1, 3, 3)), padding="same")]

    def progress(done: int, total: int) -> None:
        if done == 1:
            _rewrite(source)

    with pytest.raises(JobError, match=r"failed after (\d+) of 16 blocks") as raised:
        run_layers(
            layers, input=source, output=str(tmp_path / "out.zarr"), out_chunks=(16, 16),
            client=client, progress=progress,
        )  # fmt: skip
    computed = int(str(raised.value).split("failed after ")[1].split(" ")[0])
    assert computed < 16
