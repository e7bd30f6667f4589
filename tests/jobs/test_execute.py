"""How a job streams its blocks (``featuremap.jobs.execute``): a bounded window of tasks in flight,
and progress from the finished futures, on a real store."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zarr

from featuremap.jobs.execute import MIN_WINDOW, window_size
from featuremap.jobs.run import run

CONV = {"conv": {"bank": {"type": "gabor", "orientations": 4}, "padding": "same"}}


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("execute")
    data = np.random.default_rng(31).random((1, 70, 90), dtype=np.float32)
    zarr.create_array(str(folder / "in.zarr"), data=data, chunks=(1, 32, 32))
    return str(folder / "in.zarr"), data


def _blocks_in_flight(dask_scheduler) -> int:
    """Block tasks the scheduler has not finished (finished ones linger until released)."""
    return sum(
        "-block-" in str(key) and task.state != "memory"  # featuremap-<job>-block-<i.j>
        for key, task in dask_scheduler.tasks.items()
    )


@pytest.mark.slow
def test_tasks_in_flight_stay_within_the_window(image, tmp_path, client):
    window = window_size(client)
    assert window == max(MIN_WINDOW, 4 * sum(client.nthreads().values()))
    seen: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.append(client.run_on_scheduler(_blocks_in_flight))

    sampler = threading.Thread(target=sample)
    sampler.start()
    progress: list[tuple[int, int]] = []
    try:
        summary = run(
            {"layers": [CONV], "output": {"chunks": [4, 4]}}, input=image[0],
            output=str(tmp_path / "window.zarr"), client=client,
            progress=lambda done, total: progress.append((done, total)),
        )  # fmt: skip
    finally:
        done.set()
        sampler.join()
    assert summary.blocks_total == 18 * 23 > 4 * window  # the window bounds something
    assert max(seen) <= window, (max(seen), window)
    assert max(seen) > 1  # the samples did see tasks in flight
    counts = [done for done, _ in progress]
    assert counts == sorted(counts)  # progress only moves forward
    assert progress[-1] == (summary.blocks_total, summary.blocks_total)
