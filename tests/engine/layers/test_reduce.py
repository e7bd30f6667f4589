"""Reduce layers (``featuremap.engine.layers.reduce``): reductions per group."""

from __future__ import annotations

import numpy as np
import pytest

from featuremap.engine.layers import ReduceLayer
from featuremap.engine.stack import apply_stack
from featuremap.errors import InputError


def test_reduce_ops_per_group_and_max_abs():
    x = np.array([[[[1.0]], [[-3.0]], [[2.0]], [[-1.0]], [[0.5]]]], np.float32)  # (1, 5, 1, 1)
    layer = ReduceLayer.create(["max_abs", "max", "sum"], [2, 2, 1])
    np.testing.assert_array_equal(apply_stack([layer], x)[0, :, 0, 0], [3.0, 2.0, 0.5])
    cycled = ReduceLayer.create(["max_abs", "max"], 2)  # ops repeat with the groups
    assert [op for op, _, _ in cycled.plan(8)] == ["max_abs", "max"] * 2
    with pytest.raises(InputError, match="3 reductions for 2 groups"):
        ReduceLayer.create(["max", "max", "sum"], [2, 3]).out_channels(5)
