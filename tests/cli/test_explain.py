"""``featuremap explain`` (``featuremap.cli.explain``): its numbers are the geometry's, in a table
or JSON, from a given shape or the input store; an impossible shape is refused in one line."""

from __future__ import annotations

import json

from support.cli import run_cli, run_ok

from featuremap.apps.demo import IMAGES
from featuremap.engine.stack import resolve_stack
from featuremap.pipeline.pipeline import load_pipeline


def test_explain_numbers_match_geometry(two_layer):
    layers = load_pipeline(two_layer).build_layers(1)
    _stack = resolve_stack(layers, (50, 70), 1)
    geometries, stacks, shapes = _stack.geometries, _stack.stacks, _stack.shapes
    report = json.loads(run_ok("explain", two_layer, "--input-shape", "50,70", "--json").stdout)
    assert report["input"] == {"batch_shape": [], "channels": 1, "shape": [50, 70]}
    for row, geometry, stack, shape in zip(
        report["layers"], geometries, stacks, shapes, strict=True
    ):
        assert row["kernel_size"] == list(geometry.kernel_size)
        assert row["stride"] == list(geometry.stride)
        assert row["dilation"] == list(geometry.dilation)
        assert row["padding"] == [list(p) for p in geometry.padding]
        assert row["output_shape"] == list(shape)
        assert (row["receptive_field"], row["jump"], row["offset"]) == (
            list(stack.receptive_field),
            list(stack.jump),
            list(stack.offset),
        )
    table = run_ok("explain", two_layer, "--input-shape", "50x70").stdout
    last = table.splitlines()[-2]
    assert f"{shapes[-1][0]}×{shapes[-1][1]}×{shapes[-1][2]}" in last
    assert str(stacks[-1].receptive_field[0]) in last
    assert f"{stacks[-1].jump[0]}" in last


def test_explain_reads_the_input_store(two_layer, images):
    report = json.loads(
        run_ok("explain", two_layer, "--input", images[0], "--array", IMAGES, "--json").stdout
    )
    assert report["input"] == {"batch_shape": [2], "channels": 1, "shape": [96, 96]}


def test_explain_refuses_an_impossible_shape(two_layer):
    result = run_cli("explain", two_layer, "--input-shape", "2,2")
    assert result.returncode == 2
    assert result.stderr.startswith("featuremap: error: layer")
