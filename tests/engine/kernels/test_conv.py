"""Conformance of ``featuremap.engine.kernels.conv`` (GEMM, FFT and separable paths, the method choice)
against PyTorch (CPU) and a float64 direct reference (``support.torch_reference``). What only one
path does (tiles, bands, rank-1 factors) is in that path's file: ``test_gemm.py``, ``test_fft.py``,
``test_separable.py``."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from support.torch_reference import (
    CONV_CASES,
    assert_close,
    case_arrays,
    gaussian_bank,
    reference64,
    torch_conv,
)

from featuremap.engine.kernels import choose_method, conv2d_valid
from featuremap.errors import InputError


@pytest.mark.parametrize("method", ["auto", "gemm", "fft", "polyphase", "torch", "numba"])
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_matches_torch(case, method):
    batch, channels, n_filters, kh, kw, stride, dilation, groups, height, width = CONV_CASES[case]
    x, weight, bias = case_arrays(case, batch, channels, n_filters, kh, kw, groups, height, width)
    result = conv2d_valid(
        x, weight, bias, stride=stride, dilation=dilation, groups=groups, method=method
    )
    assert_close(result, torch_conv(x, weight, bias, stride, dilation, groups), x, weight)


@pytest.mark.parametrize("case", [1, 2, 6])
def test_conv_matches_float64_reference(case):
    batch, channels, n_filters, kh, kw, stride, dilation, groups, height, width = CONV_CASES[case]
    x, weight, bias = case_arrays(
        100 + case, batch, channels, n_filters, kh, kw, groups, height, width
    )
    expected = reference64(x, weight, bias, stride, dilation, groups)
    for method in ("gemm", "fft", "polyphase", "torch", "numba"):
        result = conv2d_valid(
            x, weight, bias, stride=stride, dilation=dilation, groups=groups, method=method
        )
        assert_close(result, expected, x, weight)


def test_nan_and_inf_propagate_like_torch():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 30, 31)).astype(np.float32)
    x[0, 1, 4, 7] = np.nan
    x[1, 0, 20, 3] = np.inf
    x[1, 2, 25:, 28:] = -np.inf
    weight = rng.standard_normal((5, 3, 7, 7)).astype(np.float32)  # large enough to tempt FFT
    expected = torch_conv(x, weight, None, (1, 1), (1, 1), 1)
    assert choose_method(x.shape, weight, (1, 1), (1, 1), 1, finite=False) == "gemm"
    for method in ("auto", "gemm", "numba"):
        result = conv2d_valid(x, weight, method=method)
        np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
        np.testing.assert_array_equal(np.isposinf(result), np.isposinf(expected))
        finite = np.isfinite(expected)
        assert_close(
            np.where(finite, result, 0), np.where(finite, expected, 0), np.nan_to_num(x), weight
        )
    for method in ("fft", "separable"):
        with pytest.raises(ValueError, match="NaN or Inf"):
            conv2d_valid(x, weight, method=method)


def test_choose_method_follows_the_cost_model():
    rng = np.random.default_rng(9)
    small = rng.standard_normal((16, 1, 3, 3)).astype(np.float32)
    large = rng.standard_normal((8, 1, 31, 31)).astype(np.float32)
    assert choose_method((1, 1024, 1024), small, (1, 1), (1, 1), 1) == "gemm"
    assert choose_method((1, 1024, 1024), large, (1, 1), (1, 1), 1) == "fft"
    assert choose_method((1, 1024, 1024), large, (1, 1), (1, 1), 1, finite=False) == "gemm"
    assert (
        choose_method((1, 2048, 2048), gaussian_bank(size=25, sigmas=(1, 2, 4)), (1, 1), (1, 1), 1)
        == "separable"
    )


@pytest.mark.parametrize("method", ["gemm", "fft", "separable"])
def test_peak_memory_within_twice_input_plus_output(method):
    weight = gaussian_bank(size=15, sigmas=(2.0, 3.0))
    x = np.random.default_rng(12).standard_normal((1, 640, 640)).astype(np.float32)
    conv2d_valid(x[:, :40, :40], weight, method=method)  # warm caches (FFT plans, SVD)
    tracemalloc.start()
    result = conv2d_valid(x, weight, method=method)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak <= 2 * (x.nbytes + result.nbytes), (peak, x.nbytes, result.nbytes)


def test_conv_converts_other_dtypes_to_float32():
    x = np.arange(2 * 6 * 6).reshape(2, 6, 6)
    weight = np.ones((1, 2, 3, 3))
    result = conv2d_valid(x, weight)
    assert result.dtype == np.float32
    assert_close(result, reference64(x, weight, None, (1, 1), (1, 1), 1), x, weight)


def test_stride_is_checked_where_it_is_parsed():
    """The kernels take parsed (y, x) pairs; a bad stride is refused where layers parse it."""
    import featuremap

    with pytest.raises(InputError, match="stride must be"):
        featuremap.conv2d(np.zeros((1, 5, 5), dtype=np.float32), np.zeros((1, 1, 3, 3)), stride=0)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs", "error", "message"),
    [
        ((5, 5), (1, 1, 3, 3), {}, InputError, r"shape \(\.\.\., C, H, W\)"),
        ((1, 5, 5), (1, 3, 3), {}, InputError, "weight must have shape"),
        ((2, 5, 5), (1, 1, 3, 3), {}, InputError, "expects 1 input channels"),
        ((3, 5, 5), (2, 1, 3, 3), {"groups": 3}, InputError, "groups=3 must divide"),
        ((1, 5, 5), (1, 1, 3, 3), {"groups": 0}, InputError, "groups must be a positive integer"),
        ((1, 5, 5), (1, 1, 6, 3), {}, InputError, "does not fit the padded input"),
        ((1, 5, 5), (1, 1, 3, 3), {"method": "winograd"}, InputError, "method must be one of"),
        (
            (1, 5, 5),
            (2, 1, 3, 3),
            {"bias": np.zeros(3)},
            InputError,
            r"bias must have shape \(2,\)",
        ),
    ],
)
def test_conv_refuses_bad_inputs(x_shape, w_shape, kwargs, error, message):
    with pytest.raises(error, match=message):
        conv2d_valid(
            np.zeros(x_shape, dtype=np.float32), np.zeros(w_shape, dtype=np.float32), **kwargs
        )
