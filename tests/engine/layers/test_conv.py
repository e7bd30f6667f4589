"""The ``conv`` layer kind: parameters parsed once, torch's rules, its description."""

from __future__ import annotations

import numpy as np
import pytest

from featuremap.engine.layers import ConvLayer
from featuremap.engine.stack import apply
from featuremap.errors import InputError

torch = pytest.importorskip("torch")


def test_create_normalises_and_describes():
    layer = ConvLayer.create(
        np.ones((4, 1, 3, 5), np.int64),
        [1, 2, 3, 4],
        stride=2,
        padding=[1, 2],
        dilation=(1, 2),
        groups=2,
    )
    assert layer.weight.dtype == np.float32
    assert layer.kernel_size == (3, 5)
    assert layer.stride == (2, 2)
    assert layer.padding == ((1, 1), (2, 2))
    assert layer.out_channels(2) == 4
    assert layer.to_dict()["padding"] == [[1, 1], [2, 2]]
    assert layer.describe()["in_channels"] == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weight": np.ones((2, 3, 3))}, "weight must have shape"),
        ({"weight": np.ones((2, 1, 3, 3)), "bias": [1.0]}, r"bias must have shape \(2,\)"),
        ({"weight": np.ones((3, 1, 3, 3)), "groups": 2}, "groups=2 must divide"),
        ({"weight": np.array([[[["a"]]]])}, "numeric array"),
        ({"weight": np.ones((1, 1, 3, 3)), "padding_mode": "mirror"}, "SciPy"),
    ],
)
def test_create_refuses_what_torch_refuses(kwargs, message):
    with pytest.raises(InputError, match=message):
        ConvLayer.create(**kwargs)


def test_channel_mismatch_and_reflect_padding_past_the_border():
    layer = ConvLayer.create(np.ones((1, 2, 3, 3)), padding=3, padding_mode="reflect")
    with pytest.raises(InputError, match=r"expects 2 input channels .* has 3"):
        layer.out_channels(3)
    with pytest.raises(InputError):
        layer.geometry((3, 10))  # reflect padding 3 on an axis of 3: torch refuses it too


def test_flip_is_true_convolution_and_apply_matches_torch():
    rng = np.random.default_rng(5)
    image = rng.standard_normal((1, 2, 9, 8)).astype(np.float32)
    weight = rng.standard_normal((3, 2, 3, 2)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    flipped = ConvLayer.create(weight, bias, flip=True, padding="same", activation="tanh")
    x = torch.from_numpy(image)
    padded = torch.nn.functional.pad(x, (0, 1, 1, 1))  # "same" for a 3x2 kernel: lo = total // 2
    expected = torch.tanh(
        torch.nn.functional.conv2d(
            padded, torch.from_numpy(weight[..., ::-1, ::-1].copy()), torch.from_numpy(bias)
        )
    ).numpy()
    np.testing.assert_allclose(apply(flipped, image), expected, rtol=1e-5, atol=1e-5)


def test_features_are_described_by_the_bank():
    layer = ConvLayer.create(
        np.ones((2, 1, 1, 1)), bank={"name": "edge", "filters": [{"name": "e"}] * 2}
    )
    assert layer.describe_features([], None) == [{"name": "e"}, {"name": "e"}]
    anonymous = ConvLayer.create(np.ones((2, 1, 1, 1)), bank={"name": "learned"})
    assert anonymous.describe_features([], None) == [
        {"name": "learned", "index": 0},
        {"name": "learned", "index": 1},
    ]
