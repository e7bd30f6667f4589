"""The sample ``output.codec: auto`` decides on (``featuremap.jobs.sample``): windows of the
job's own features, computed as the blocks compute them, small beside the job."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.stores import write_input

from featuremap.engine.layers import ConvLayer
from featuremap.engine.stack import apply_stack
from featuremap.io.sizing import OutputOptions
from featuremap.jobs.plan import plan_job
from featuremap.jobs.sample import SAMPLE_FRACTION, SAMPLE_PIXELS, sample_windows


def _where(window: np.ndarray, features: np.ndarray) -> list[tuple[int, int]]:
    """The ``(y, x)`` offsets at which ``window (F, h, w)`` equals part of ``features (F, H, W)``."""
    _, h, w = window.shape
    return [
        (y, x)
        for y in range(features.shape[1] - h + 1)
        for x in range(features.shape[2] - w + 1)
        if np.array_equal(features[:, y : y + h, x : x + w], window)
    ]


@pytest.mark.parametrize(("size", "chunks"), [(96, 32), (200, 64), (40, 40)])
def test_windows_are_the_jobs_own_features_and_small(tmp_path, size, chunks):
    rng = np.random.default_rng(size)
    data = rng.random((1, size, size), dtype=np.float32)
    source = write_input(tmp_path / "in.zarr", data, (1, 32, 32))
    layers = [ConvLayer.create(rng.standard_normal((3, 1, 5, 5)), padding="same")]
    plan = plan_job(
        lambda channels, spacing: layers,
        input=source,
        array=None,
        output=str(tmp_path / "out.zarr"),
        options=OutputOptions(chunks=(chunks, chunks), codec="none"),
        pipeline=None,
        pipeline_hash=None,
    )
    features = apply_stack(layers, data)  # (feature, y, x): the input has no batch axis
    windows = sample_windows(plan.source, plan.stack, plan.layout)
    assert 1 <= len(windows) <= 2
    for window in windows:
        assert window.shape[0] == 3  # every feature
        pixels = math.prod(window.shape[1:])
        assert pixels <= max(64, min(SAMPLE_PIXELS, size * size * SAMPLE_FRACTION))
        assert _where(window, features), "not a window of the job's features"
    assert not (tmp_path / "out.zarr").exists()  # planning writes nothing
