"""The fused per-block compute against the whole-image stack: any block of the output, computed
from only the input intervals its plans read, equals the same part of the in-memory result."""

from __future__ import annotations

import numpy as np
import pytest

from featuremap.engine.blockplan import plan_axis
from featuremap.engine.fused import axis_steps, compute_compact, concatenate
from featuremap.engine.layers import ConvLayer, PoolLayer, ReduceLayer
from featuremap.engine.stack import apply_stack, resolve_stack


def _compact(image, plan_y, plan_x):
    """The block's compact input: the pieces its plans read, concatenated."""
    rows = [image[..., y.start : y.stop, :] for y in plan_y.reads]
    band = np.concatenate(rows, axis=-2)
    return np.concatenate([band[..., x.start : x.stop] for x in plan_x.reads], axis=-1)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_every_block_equals_the_whole_image_result(mode):
    rng = np.random.default_rng(3)
    image = rng.standard_normal((2, 2, 23, 19)).astype(np.float32)
    layers = [
        ConvLayer.create(
            rng.standard_normal((4, 2, 5, 4)), padding="same", padding_mode=mode, dilation=(2, 1)
        ),
        PoolLayer.create("max", 2, padding=1),
        ReduceLayer.create("sum", 2),
        ConvLayer.create(rng.standard_normal((3, 2, 3, 3)), stride=2, padding=1),
    ]
    stack = resolve_stack(layers, image.shape[-2:], 2)
    whole = apply_stack(layers, image)
    y_steps, x_steps = axis_steps(stack)
    _, height, width = stack.output_shape
    for y0, y1 in ((0, 2), (2, height)):
        for x0, x1 in ((0, 1), (1, width)):
            plan_y = plan_axis(y_steps, y0, y1, [image.shape[-2]])
            plan_x = plan_axis(x_steps, x0, x1, [image.shape[-1]])
            block = compute_compact(stack.layers, plan_y, plan_x, _compact(image, plan_y, plan_x))
            np.testing.assert_allclose(block, whole[..., y0:y1, x0:x1], rtol=1e-5, atol=1e-5)


def test_axis_steps_follow_the_stack():
    layers = [ConvLayer.create(np.ones((1, 1, 3, 5)), stride=(1, 2)), PoolLayer.create("avg", 2)]
    stack = resolve_stack(layers, (20, 30), 1)
    y_steps, x_steps = axis_steps(stack)
    assert [step.size for step in y_steps] == [20, 18]
    assert [step.size for step in x_steps] == [30, 13]


def test_concatenate_returns_a_lone_part_itself():
    part = np.ones((2, 3))
    assert concatenate([part], -1) is part
    assert concatenate([part, part], -1).shape == (2, 6)
