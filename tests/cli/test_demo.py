"""``featuremap demo`` (``featuremap.cli.demo``): sample images through the default pipeline, a
result that xarray opens with the geometry's coordinates."""

from __future__ import annotations

import numpy as np
import pytest
from support import REPO
from support.cli import run_ok

from featuremap.engine.stack import resolve_stack
from featuremap.pipeline.pipeline import load_pipeline


@pytest.mark.cluster
@pytest.mark.slow
def test_demo_result_opens_with_xarray(tmp_path):
    import xarray as xr

    result = run_ok(
        "demo", "--output", tmp_path / "demo", "--workers", "2", "--size", "128", "--images", "2"
    )
    assert "xarray.open_zarr" in result.stdout
    dataset = xr.open_zarr(tmp_path / "demo" / "features.zarr")
    features = dataset["features"]
    layers = load_pipeline(REPO / "pipelines" / "default.yaml").build_layers(1)
    _stack = resolve_stack(layers, (128, 128), 1)
    stacks, shapes = _stack.stacks, _stack.shapes
    assert features.shape == (2, *shapes[-1])
    offset, jump = stacks[-1].offset, stacks[-1].jump
    np.testing.assert_allclose(dataset["y"].values, offset[0] + jump[0] * np.arange(shapes[-1][1]))
    np.testing.assert_allclose(dataset["x"].values, offset[1] + jump[1] * np.arange(shapes[-1][2]))
