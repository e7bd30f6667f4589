"""Pool layers (``featuremap.engine.layers.pool``): what torch refuses is refused."""

from __future__ import annotations

import numpy as np
import pytest

import featuremap
from featuremap.errors import InputError


@pytest.mark.parametrize("pool", ["max_pool2d", "avg_pool2d"])
def test_pools_on_an_empty_channel_axis_raise_like_torch(pool):
    torch = pytest.importorskip("torch")
    empty = np.zeros((1, 0, 4, 4), np.float32)
    with pytest.raises(RuntimeError):
        getattr(torch.nn.functional, pool)(torch.from_numpy(empty), 2)
    with pytest.raises(InputError, match="at least one channel"):
        getattr(featuremap, pool)(empty, 2)
    # an empty batch is fine, as in torch
    batch = np.zeros((0, 3, 4, 4), np.float32)
    expected = getattr(torch.nn.functional, pool)(torch.from_numpy(batch), 2).shape
    assert getattr(featuremap, pool)(batch, 2).shape == tuple(expected)
