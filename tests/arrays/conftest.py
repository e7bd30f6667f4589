"""Fixtures of the array tests: an xarray scene."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr


@pytest.fixture
def scene():
    """(time, lat, lon, band): channel-last, descending latitude, 0.5-degree pixels."""
    rng = np.random.default_rng(0)
    values = rng.random((2, 24, 20, 3), dtype=np.float32)
    return xr.DataArray(
        values,
        dims=("time", "lat", "lon", "band"),
        coords={
            "time": np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[ns]"),
            "lat": 60.0 - 0.5 * np.arange(24),
            "lon": 5.0 + 0.5 * np.arange(20),
            "band": ["red", "green", "blue"],
        },
        name="rgb",
    )
