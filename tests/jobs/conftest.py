"""Fixtures of the job tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from support.stores import write_input

from featuremap.engine.layers import ConvLayer
from featuremap.engine.stack import apply_stack
from featuremap.jobs.run import run_layers


@pytest.fixture
def finished(tmp_path, client) -> tuple[Path, list, np.ndarray, str]:
    """A complete store of 4 x 5 blocks: ``(store, layers, features, input)``."""
    rng = np.random.default_rng(21)
    data = rng.random((1, 40, 50), dtype=np.float32)
    source = write_input(tmp_path / "in.zarr", data, (1, 20, 25))
    layers = [
        ConvLayer.create(rng.standard_normal((3, 1, 5, 5)), padding="same", padding_mode="reflect")
    ]
    store = tmp_path / "out.zarr"
    run_layers(layers, input=source, output=str(store), out_chunks=(10, 10), client=client)
    features = zarr.open_group(str(store), mode="r")["features"][...]
    np.testing.assert_allclose(features, apply_stack(layers, data), rtol=2e-5, atol=2e-5)
    return store, layers, features, source
