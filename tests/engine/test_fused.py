"""The fused per-block compute against the whole-image stack: any block of the output, computed
from only the input intervals its plans read, equals the same part of the in-memory result."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from featuremap.engine.blockplan import plan_axis
from featuremap.engine.fused import axis_steps, compute_compact, concatenate
from featuremap.engine.layers import ConvLayer, PoolLayer, ReduceLayer
from featuremap.engine.stack import apply_stack, resolve_stack


def _compact(image, plans):
    """The block's compact input: the pieces its plans read (one plan per spatial axis),
    concatenated along each axis."""
    for axis, plan in enumerate(plans):
        index = [slice(None)] * image.ndim
        pieces = []
        for piece in plan.reads:
            index[axis - len(plans)] = slice(piece.start, piece.stop)
            pieces.append(image[tuple(index)])
        image = np.concatenate(pieces, axis=axis - len(plans))
    return image


def _check_every_block(layers, image, splits):
    """Blocks cut at ``splits`` (per axis, output coordinates) equal the whole-image result."""
    ndim = len(splits)
    stack = resolve_stack(layers, image.shape[-ndim:], image.shape[-ndim - 1])
    whole = apply_stack(layers, image)
    steps = axis_steps(stack)
    bounds = [
        list(itertools.pairwise([0, *cuts, size]))
        for cuts, size in zip(splits, stack.output_shape[1:], strict=True)
    ]
    for block in itertools.product(*bounds):
        plans = [
            plan_axis(axis_steps, start, stop, [size])
            for axis_steps, (start, stop), size in zip(
                steps, block, image.shape[-ndim:], strict=True
            )
        ]
        out = compute_compact(stack.layers, plans, _compact(image, plans))
        expected = whole[(..., *(slice(start, stop) for start, stop in block))]
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


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
    _check_every_block(layers, image, [[2], [1]])


@pytest.mark.parametrize(
    "modes", [{"z": "reflect", "y": "replicate", "x": "circular"}, "circular", "zeros"]
)
def test_every_3d_block_equals_the_whole_volume_result(modes):
    rng = np.random.default_rng(5)
    volume = rng.standard_normal((2, 11, 13, 9)).astype(np.float32)
    layers = [
        ConvLayer.create(
            rng.standard_normal((4, 2, 3, 4, 3)),
            padding="same",
            padding_mode=modes,
            dilation=(1, 2, 1),
        ),
        PoolLayer.create("avg", [2, 2, 3], padding=[1, 0, 1], ceil_mode=True),
        ReduceLayer.create("magnitude", 2),
        PoolLayer.create("max", 2, stride=1, ndim=3),
    ]
    _check_every_block(layers, volume, [[1, 3], [2], [1]])


def test_axis_steps_follow_the_stack():
    layers = [ConvLayer.create(np.ones((1, 1, 3, 5)), stride=(1, 2)), PoolLayer.create("avg", 2)]
    stack = resolve_stack(layers, (20, 30), 1)
    y_steps, x_steps = axis_steps(stack)
    assert [step.size for step in y_steps] == [20, 18]
    assert [step.size for step in x_steps] == [30, 13]


def test_axis_steps_of_a_3d_stack_run_along_z_y_x():
    layers = [ConvLayer.create(np.ones((1, 1, 5, 3, 1)), stride=(2, 1, 1))]
    z_steps, y_steps, x_steps = axis_steps(resolve_stack(layers, (20, 30, 7), 1))
    assert [z_steps[0].size, y_steps[0].size, x_steps[0].size] == [20, 30, 7]
    assert z_steps[0].layer.stride == 2


def test_concatenate_returns_a_lone_part_itself():
    part = np.ones((2, 3))
    assert concatenate([part], -1) is part
    assert concatenate([part, part], -1).shape == (2, 6)
