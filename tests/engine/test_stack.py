"""A stack resolved once against an input; its in-memory execution is the oracle of the chunked
paths, so it is checked against torch here."""

from __future__ import annotations

import numpy as np
import pytest

from featuremap.engine.layers import ConvLayer, PoolLayer, ReduceLayer
from featuremap.engine.stack import MAX_EXACT, apply_stack, as_float32, resolve_stack
from featuremap.errors import InputError

torch = pytest.importorskip("torch")


def test_resolved_shapes_geometry_and_description():
    layers = [
        ConvLayer.create(np.ones((4, 2, 3, 3)), stride=2, padding=1),
        PoolLayer.create("max", 2),
        ReduceLayer.create("mean", 2),
    ]
    stack = resolve_stack(layers, (17, 12), 2)
    assert stack.input_shape == (2, 17, 12)
    assert stack.shapes == ((4, 9, 6), (4, 4, 3), (2, 4, 3))
    assert stack.output_shape == (2, 4, 3)
    assert stack.input_sizes == ((17, 12), (9, 6), (4, 3))
    assert stack.geometry.jump == (4, 4)
    assert stack.geometry.receptive_field == (5, 5)  # 3, then + (2 - 1) * 2
    described = stack.describe()
    assert [d["type"] for d in described] == ["conv", "pool", "reduce"]
    assert described[1]["output_shape"] == [4, 4, 3]
    assert described[-1]["jump"] == [4, 4]


def test_feature_labels_follow_each_layer_and_name_channels():
    gaussian = {"name": "gaussian", "sigma": 1.0}
    conv = ConvLayer.create(
        np.ones((2, 1, 3, 3)),
        groups=2,
        bank={"filters": [{**gaussian, "channel": 0}, {**gaussian, "channel": 1}]},
    )
    stack = resolve_stack(
        [conv, PoolLayer.create("avg", 2), ReduceLayer.create("max", 2)], (8, 8), 2
    )
    first = resolve_stack([conv], (8, 8), 2)
    assert first.feature_labels(["DAPI", "GFP"]) == ("gaussian σ=1 c=DAPI", "gaussian σ=1 c=GFP")
    assert first.feature_labels() == ("gaussian σ=1 c=0", "gaussian σ=1 c=1")
    assert stack.feature_labels(["DAPI", "GFP"]) == (
        "max of gaussian σ=1 c=DAPI … gaussian σ=1 c=GFP",
    )
    unnamed = resolve_stack([ConvLayer.create(np.ones((3, 1, 1, 1)))], (4, 4), 1)
    assert unnamed.feature_labels() == ("conv #0", "conv #1", "conv #2")


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([], "the layer stack is empty"),
        ([ConvLayer.create(np.ones((1, 1, 9, 9)))], r"layers\[0\].conv: .*kernel"),
        (
            [PoolLayer.create("max", 2), ConvLayer.create(np.ones((1, 3, 1, 1)))],
            r"layers\[1\].conv: the conv layer expects 3 input channels",
        ),
        (
            [ConvLayer.create(np.ones((1, 1, 1, 1)), stride=2**40)] * 2,
            r"layers\[1\].conv: .*past 2\*\*53",
        ),
    ],
)
def test_impossible_stacks_name_the_layer(layers, message):
    with pytest.raises(InputError, match=message):
        resolve_stack(layers, (8, 8), 1)
    assert MAX_EXACT == 2**53


def test_apply_stack_matches_torch():
    rng = np.random.default_rng(11)
    image = rng.standard_normal((2, 3, 20, 17)).astype(np.float32)
    weight = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    layers = [
        ConvLayer.create(weight, padding=1, padding_mode="circular", activation="relu"),
        PoolLayer.create("avg", 2, padding=1),
    ]
    ours = apply_stack(layers, image)
    x = torch.nn.functional.pad(torch.from_numpy(image), (1, 1, 1, 1), mode="circular")
    y = torch.relu(torch.nn.functional.conv2d(x, torch.from_numpy(weight)))
    expected = torch.nn.functional.avg_pool2d(y, 2, padding=1, count_include_pad=True).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


def test_as_float32_converts_integers_and_refuses_text():
    assert as_float32(np.arange(3, dtype=np.uint16)).dtype == np.float32
    with pytest.raises(InputError, match="numeric"):
        as_float32(np.array(["a"]))
