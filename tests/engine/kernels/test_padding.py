"""``featuremap.engine.kernels.padding``: border padding against ``torch.nn.functional.pad``."""

from __future__ import annotations

import numpy as np
import pytest

from featuremap.engine.kernels import pad
from featuremap.errors import InputError

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("batch", [(), (2,), (2, 1)])
def test_pad_matches_torch(mode, batch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((*batch, 2, 7, 6)).astype(np.float32)
    widths = ((2, 3), (5, 1))
    expected = F.pad(
        torch.from_numpy(x.reshape((-1, *x.shape[-3:]))), (5, 1, 2, 3), mode=mode
    ).numpy()
    result = pad(x, widths, mode)
    np.testing.assert_array_equal(result, expected.reshape(batch + expected.shape[1:]))


@pytest.mark.parametrize(
    ("mode", "value"), [("zeros", 0.0), ("constant", -np.inf), ("constant", 2.5)]
)
def test_pad_constant_modes(mode, value):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    result = pad(x, ((1, 0), (0, 2)), mode, value=value if mode == "constant" else 7.0)
    assert result.shape == (4, 6)
    np.testing.assert_array_equal(result[1:, :4], x)
    assert np.all(result[0] == value)
    assert np.all(result[:, 4:] == value)


def test_pad_without_padding_returns_input_itself():
    x = np.ones((2, 3, 3), dtype=np.float32)
    assert pad(x, ((0, 0), (0, 0)), "reflect") is x


@pytest.mark.parametrize(
    ("padding", "mode", "message"),
    [
        (((1, 1), (1, 1)), "mirror", "padding mode must be one of"),
        (((1, -1), (0, 0)), "zeros", "non-negative integers"),
        ((1, 1), "zeros", "non-negative integers"),
        (
            ((3, 0), (0, 0)),
            "reflect",
            "reflect padding 3 along y must be smaller than the input size 3",
        ),
        (((0, 0), (0, 5)), "circular", "circular padding 5 along x exceeds the input size 4"),
    ],
)
def test_pad_refuses_bad_requests(padding, mode, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pad(np.zeros((3, 4), dtype=np.float32), padding, mode)
