"""The polyphase path of ``conv2d_valid`` (:mod:`.polyphase`): forced through
``method="polyphase"`` it matches PyTorch and the float64 reference (the case table: ``test_conv.py``); the cost model counts its
zero taps and phase copy, which keeps it off 5x5/2-type layers."""

from __future__ import annotations

import numpy as np
from support.torch_reference import (
    assert_close,
    case_arrays,
    reference64,
)

from featuremap.engine.kernels import choose_method, conv2d_valid
from featuremap.engine.kernels.conv import estimate_seconds
from featuremap.engine.kernels.polyphase import phase_kernel


def test_polyphase_random_shapes():
    """Random strides (up to larger than the kernel), dilations, groups and even kernels."""
    rng = np.random.default_rng(42)
    for _ in range(16):
        groups = int(rng.choice([1, 2]))
        channels, n_filters = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
        kh, kw = (int(k) for k in rng.integers(1, 9, size=2))
        stride = tuple(int(s) for s in rng.integers(1, 6, size=2))
        dilation = tuple(int(d) for d in rng.integers(1, 4, size=2))
        height = dilation[0] * (kh - 1) + 1 + int(rng.integers(0, 25))
        width = dilation[1] * (kw - 1) + 1 + int(rng.integers(0, 25))
        x, weight, bias = case_arrays(
            int(rng.integers(1000)), (2,), channels, n_filters, kh, kw, groups, height, width
        )
        result = conv2d_valid(
            x, weight, bias, stride=stride, dilation=dilation, groups=groups, method="polyphase"
        )
        assert_close(result, reference64(x, weight, bias, stride, dilation, groups), x, weight)


def test_polyphase_nan_falls_back_to_the_exact_gemm():
    """A zero tap of a phase kernel reads pixels no real tap reads: a NaN there must not spread."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 31, 31)).astype(np.float32)
    x[0, 3, 3] = np.nan  # read by no tap of a 3x3 stride-4 window (only by a zero phase tap)
    x[1, 20, 20] = np.inf
    weight = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    expected = conv2d_valid(x, weight, stride=(4, 4), method="gemm")
    result = conv2d_valid(x, weight, stride=(4, 4), method="polyphase")
    np.testing.assert_array_equal(result, expected)


def test_phase_kernel_and_zero_taps_are_counted():
    assert phase_kernel(11, 4, 1) == 3  # 11x11/4 -> 3x3 phases: 16 * 9 = 144 taps for 121
    assert phase_kernel(5, 2, 1) == 3  # 5x5/2 -> 3x3 phases: 4 * 9 = 36 taps for 25
    assert phase_kernel(3, 2, 2) == 3
    shape, weight, stride = (3, 2052, 2052), (32, 3, 5, 5), (2, 2)
    polyphase = estimate_seconds("polyphase", shape, weight, stride, (1, 1), 1)
    assert polyphase > estimate_seconds("gemm", shape, weight, stride, (1, 1), 1)
    bank = np.random.default_rng(1).standard_normal(weight).astype(np.float32)
    assert choose_method(shape, bank, stride, (1, 1), 1) != "polyphase"
