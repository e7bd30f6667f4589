"""``pool`` in a pipeline file."""

from __future__ import annotations

from pathlib import Path

import pytest

from featuremap.engine.layers import PoolLayer
from featuremap.errors import InputError
from featuremap.pipeline.layers import PoolSpec
from featuremap.pipeline.layers._base import BuildContext, ParseContext


def parse(value):
    return PoolSpec.parse(value, "layers[1].pool", ParseContext(Path.cwd()))


def test_stride_defaults_to_the_kernel_and_round_trips():
    spec = parse({"type": "avg", "kernel_size": [2, 3]})
    assert spec.stride == [2, 3]
    assert parse(spec.to_dict()) == spec
    layer = spec.build(BuildContext(channels=4))
    assert layer == PoolLayer.create("avg", (2, 3), (2, 3), 0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"kernel_size": 2}, r"layers\[1\].pool.type: missing"),
        ({"type": "min", "kernel_size": 2}, r"layers\[1\].pool.type: must be one of"),
        (
            {"type": "max", "kernel_size": 2, "padding": 2},
            r"layers\[1\].pool.padding: pool padding 2",
        ),
    ],
)
def test_refusals_name_their_place(value, message):
    with pytest.raises(InputError, match=message):
        parse(value)


def test_torchs_pool_options_are_read_and_written_back_only_when_set():
    spec = parse(
        {
            "type": "avg",
            "kernel_size": 3,
            "stride": 2,
            "ceil_mode": True,
            "count_include_pad": False,
        }
    )
    assert spec.to_dict() == {
        "type": "avg",
        "kernel_size": [3, 3],
        "stride": [2, 2],
        "padding": [[0, 0], [0, 0]],
        "ceil_mode": True,
        "count_include_pad": False,
    }
    assert parse(spec.to_dict()) == spec
    layer = spec.build(BuildContext(channels=1))
    assert layer.ceil_mode
    assert not layer.count_include_pad
    dilated = parse({"type": "max", "kernel_size": 3, "dilation": 2}).build(BuildContext(1))
    assert dilated.dilation == (2, 2)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"type": "avg", "kernel_size": 2, "dilation": 2}, r"layers\[1\].pool: dilation is a max"),
        ({"type": "max", "kernel_size": 2, "ceil_mode": "yes"}, r"layers\[1\].pool.ceil_mode:"),
        ({"type": "avg", "kernel_size": 2, "divisor_override": 0}, r"layers\[1\].pool: .*zero"),
    ],
)
def test_pool_option_refusals(value, message):
    with pytest.raises(InputError, match=message):
        parse(value)
