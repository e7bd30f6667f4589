"""Layer specifications (featuremap.engine.layers): what torch refuses is refused, reductions per group."""

from __future__ import annotations

import numpy as np
import pytest

import featuremap
from featuremap.engine.layers import ReduceLayer
from featuremap.engine.stack import apply_stack
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


def test_reduce_ops_per_group_and_max_abs():
    x = np.array([[[[1.0]], [[-3.0]], [[2.0]], [[-1.0]], [[0.5]]]], np.float32)  # (1, 5, 1, 1)
    layer = ReduceLayer.create(["max_abs", "max", "sum"], [2, 2, 1])
    np.testing.assert_array_equal(apply_stack([layer], x)[0, :, 0, 0], [3.0, 2.0, 0.5])
    cycled = ReduceLayer.create(["max_abs", "max"], 2)  # ops repeat with the groups
    assert [op for op, _, _ in cycled.plan(8)] == ["max_abs", "max"] * 2
    with pytest.raises(InputError, match="3 reductions for 2 groups"):
        ReduceLayer.create(["max", "max", "sum"], [2, 3]).out_channels(5)
