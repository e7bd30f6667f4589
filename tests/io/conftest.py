"""Fixtures of the io tests: a finished job's store, written once per test module."""

from __future__ import annotations

import numpy as np
import pytest
from support.stores import write_input

from featuremap.engine.layers import ConvLayer, PoolLayer
from featuremap.engine.stack import apply_stack
from featuremap.jobs.run import run_layers


def job_layers(rng: np.random.Generator) -> list:
    return [
        ConvLayer.create(
            rng.standard_normal((5, 2, 4, 3)),
            rng.standard_normal(5),
            padding="same",
            activation="tanh",
            bank={"type": "random", "seed": 1},
        ),
        PoolLayer.create("avg", 2),
        ConvLayer.create(
            rng.standard_normal((3, 5, 3, 3)), stride=2, padding=1, padding_mode="replicate"
        ),
    ]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, client):
    """A completed 3-layer job over a (time, channel, y, x) input, and its oracle."""
    rng = np.random.default_rng(11)
    tmp = tmp_path_factory.mktemp("store")
    data = rng.random((2, 2, 61, 75), dtype=np.float32)
    source = write_input(
        tmp / "in.zarr", data, (1, 2, 20, 32), dimension_names=["t", "c", "y", "x"]
    )
    layers = job_layers(rng)
    output = str(tmp / "out.zarr")
    run_layers(layers, input=source, output=output, out_chunks=(5, 6), client=client)
    return output, layers, data, apply_stack(layers, data)
