"""The separable path (``featuremap.engine.kernels.separable``): rank-1 banks against PyTorch, with
strides, dilations, several channels and groups; a full-rank bank is refused."""

from __future__ import annotations

import numpy as np
import pytest
from support.torch_reference import assert_close, gaussian_bank, torch_conv

from featuremap.engine.kernels import conv2d_valid


@pytest.mark.parametrize("method", ["auto", "separable", "gemm", "fft"])
@pytest.mark.parametrize(("stride", "dilation"), [((1, 1), (1, 1)), ((2, 3), (1, 2))])
def test_separable_bank_matches_torch(method, stride, dilation):
    weight = gaussian_bank()
    x = np.random.default_rng(5).standard_normal((2, 1, 45, 52)).astype(np.float32)
    result = conv2d_valid(x, weight, stride=stride, dilation=dilation, method=method)
    assert_close(result, torch_conv(x, weight, None, stride, dilation, 1), x, weight)


def test_separable_with_several_channels_and_groups():
    bank = gaussian_bank(size=5, sigmas=(1.0,))  # 6 rank-1 filters
    weight = np.concatenate([bank, bank[::-1] * 2], axis=1)  # (6, 2, 5, 5), each slice rank 1
    x = np.random.default_rng(6).standard_normal((4, 19, 23)).astype(np.float32)
    for groups, channels in ((1, 2), (2, 4)):
        result = conv2d_valid(x[:channels], weight, groups=groups, method="separable")
        expected = torch_conv(x[None, :channels], weight, None, (1, 1), (1, 1), groups)[0]
        assert_close(result, expected, x, weight)


def test_separable_refused_for_a_full_rank_bank():
    weight = np.random.default_rng(7).standard_normal((3, 1, 5, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="rank 1"):
        conv2d_valid(np.zeros((1, 9, 9), dtype=np.float32), weight, method="separable")
