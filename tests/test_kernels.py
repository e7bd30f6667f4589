"""Conformance of featuremap._kernels against PyTorch (CPU) and a float64 direct reference."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from featuremap._kernels import (
    ACTIVATIONS,
    activate,
    array_namespace,
    avg_pool_valid,
    choose_method,
    conv2d_valid,
    max_pool_valid,
    pad,
)
from featuremap._kernels import fft as fft_module
from featuremap._kernels import gemm as gemm_module
from featuremap.errors import InputError

torch = pytest.importorskip("torch")
F = torch.nn.functional
torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# helpers


def _torch_conv(x, weight, bias, stride, dilation, groups):
    """torch conv2d on (..., C, H, W) with any number of batch axes."""
    batch = x.shape[:-3]
    images = torch.from_numpy(np.ascontiguousarray(x.reshape((-1,) + x.shape[-3:])))
    b = None if bias is None else torch.from_numpy(bias)
    result = F.conv2d(images, torch.from_numpy(weight), b, stride=stride, dilation=dilation, groups=groups)
    return result.numpy().reshape(batch + tuple(result.shape[1:]))


def _tolerance(x, weight):
    """1e-4 * sum|w| * max|x| per output channel, broadcastable against (..., J, H, W)."""
    per_filter = np.abs(weight.astype(np.float64)).sum(axis=(1, 2, 3))
    return 1e-4 * per_filter[:, None, None] * max(np.abs(x).max(), 1.0)


def _assert_close(result, expected, x, weight):
    assert result.dtype == np.float32
    assert result.shape == expected.shape
    error = np.abs(result.astype(np.float64) - expected)
    assert np.all(error <= _tolerance(x, weight)), float(error.max())


def _reference64(x, weight, bias, stride, dilation, groups):
    """Direct loops over taps in float64 (independent of torch and of the implementation)."""
    x64, w64 = x.astype(np.float64), weight.astype(np.float64)
    n_filters, group_channels, kh, kw = weight.shape
    (sy, sx), (dy, dx) = stride, dilation
    out_h = (x.shape[-2] - dy * (kh - 1) - 1) // sy + 1
    out_w = (x.shape[-1] - dx * (kw - 1) - 1) // sx + 1
    out = np.zeros(x.shape[:-3] + (n_filters, out_h, out_w))
    per_group = n_filters // groups
    for j in range(n_filters):
        first = (j // per_group) * group_channels
        for c in range(group_channels):
            for ty in range(kh):
                for tx in range(kw):
                    rows = slice(ty * dy, ty * dy + (out_h - 1) * sy + 1, sy)
                    cols = slice(tx * dx, tx * dx + (out_w - 1) * sx + 1, sx)
                    out[..., j, :, :] += w64[j, c, ty, tx] * x64[..., first + c, rows, cols]
        if bias is not None:
            out[..., j, :, :] += bias[j]
    return out


def _gaussian_bank(size=9, sigmas=(1.0, 2.0)):
    """Gaussian derivatives of orders (0,0),(0,1),(1,0),(0,2),(1,1),(2,0): exactly rank 1."""
    t = np.arange(size) - size // 2
    filters = []
    for sigma in sigmas:
        g = np.exp(-(t**2) / (2 * sigma**2))
        g /= g.sum()
        derivatives = [g, -t / sigma**2 * g, (t**2 / sigma**4 - 1 / sigma**2) * g]
        for oy, ox in [(0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (2, 0)]:
            filters.append(np.outer(derivatives[oy], derivatives[ox]))
    return np.stack(filters)[:, None].astype(np.float32)


# (batch, C, J, kh, kw, stride, dilation, groups, H, W)
CONV_CASES = [
    ((), 1, 4, 3, 3, (1, 1), (1, 1), 1, 20, 21),
    ((2,), 4, 6, 5, 3, (2, 1), (2, 1), 2, 33, 28),
    ((2, 3), 3, 3, 7, 7, (3, 3), (1, 1), 3, 17, 18),  # depthwise
    ((), 16, 32, 1, 1, (1, 1), (1, 1), 1, 12, 11),  # 1x1
    ((), 2, 5, 2, 2, (5, 4), (1, 1), 1, 23, 24),  # stride larger than the kernel
    ((1,), 2, 2, 9, 8, (1, 1), (1, 1), 1, 9, 8),  # kernel as large as the input
    ((), 6, 4, 3, 4, (2, 3), (3, 2), 2, 30, 31),  # dilation, even kernel
    ((), 1, 3, 15, 15, (1, 1), (1, 1), 1, 40, 37),  # large kernel
]


def _case_arrays(seed, batch, channels, n_filters, kh, kw, groups, height, width):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(batch + (channels, height, width)).astype(np.float32)
    weight = rng.standard_normal((n_filters, channels // groups, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(n_filters).astype(np.float32)
    return x, weight, bias


# ---------------------------------------------------------------------------------------------
# namespace and padding


def test_array_namespace_is_numpy_for_numpy_arrays():
    assert array_namespace(np.zeros(3)) is np


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("batch", [(), (2,), (2, 1)])
def test_pad_matches_torch(mode, batch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(batch + (2, 7, 6)).astype(np.float32)
    widths = ((2, 3), (5, 1))
    expected = F.pad(torch.from_numpy(x.reshape((-1,) + x.shape[-3:])), (5, 1, 2, 3), mode=mode).numpy()
    result = pad(x, widths, mode)
    np.testing.assert_array_equal(result, expected.reshape(batch + expected.shape[1:]))


@pytest.mark.parametrize("mode, value", [("zeros", 0.0), ("constant", -np.inf), ("constant", 2.5)])
def test_pad_constant_modes(mode, value):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    result = pad(x, ((1, 0), (0, 2)), mode, value=value if mode == "constant" else 7.0)
    assert result.shape == (4, 6)
    np.testing.assert_array_equal(result[1:, :4], x)
    assert np.all(result[0] == value) and np.all(result[:, 4:] == value)


def test_pad_without_padding_returns_input_itself():
    x = np.ones((2, 3, 3), dtype=np.float32)
    assert pad(x, ((0, 0), (0, 0)), "reflect") is x


@pytest.mark.parametrize(
    "padding, mode, message",
    [
        (((1, 1), (1, 1)), "mirror", "padding mode must be one of"),
        (((1, -1), (0, 0)), "zeros", "non-negative integers"),
        ((1, 1), "zeros", "non-negative integers"),
        (((3, 0), (0, 0)), "reflect", "reflect padding 3 along y must be smaller than the input size 3"),
        (((0, 0), (0, 5)), "circular", "circular padding 5 along x exceeds the input size 4"),
    ],
)
def test_pad_refuses_bad_requests(padding, mode, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pad(np.zeros((3, 4), dtype=np.float32), padding, mode)


# ---------------------------------------------------------------------------------------------
# convolution


@pytest.mark.parametrize("method", ["auto", "gemm", "fft"])
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_matches_torch(case, method):
    batch, channels, n_filters, kh, kw, stride, dilation, groups, height, width = CONV_CASES[case]
    x, weight, bias = _case_arrays(case, batch, channels, n_filters, kh, kw, groups, height, width)
    result = conv2d_valid(x, weight, bias, stride=stride, dilation=dilation, groups=groups, method=method)
    _assert_close(result, _torch_conv(x, weight, bias, stride, dilation, groups), x, weight)


@pytest.mark.parametrize("case", [1, 2, 6])
def test_conv_matches_float64_reference(case):
    batch, channels, n_filters, kh, kw, stride, dilation, groups, height, width = CONV_CASES[case]
    x, weight, bias = _case_arrays(100 + case, batch, channels, n_filters, kh, kw, groups, height, width)
    expected = _reference64(x, weight, bias, stride, dilation, groups)
    for method in ("gemm", "fft"):
        result = conv2d_valid(x, weight, bias, stride=stride, dilation=dilation, groups=groups, method=method)
        _assert_close(result, expected, x, weight)


@pytest.mark.parametrize("method", ["auto", "separable", "gemm", "fft"])
@pytest.mark.parametrize("stride, dilation", [((1, 1), (1, 1)), ((2, 3), (1, 2))])
def test_separable_bank_matches_torch(method, stride, dilation):
    weight = _gaussian_bank()
    x = np.random.default_rng(5).standard_normal((2, 1, 45, 52)).astype(np.float32)
    result = conv2d_valid(x, weight, stride=stride, dilation=dilation, method=method)
    _assert_close(result, _torch_conv(x, weight, None, stride, dilation, 1), x, weight)


def test_separable_with_several_channels_and_groups():
    bank = _gaussian_bank(size=5, sigmas=(1.0,))  # 6 rank-1 filters
    weight = np.concatenate([bank, bank[::-1] * 2], axis=1)  # (6, 2, 5, 5), each slice rank 1
    x = np.random.default_rng(6).standard_normal((4, 19, 23)).astype(np.float32)
    for groups, channels in ((1, 2), (2, 4)):
        result = conv2d_valid(x[:channels], weight, groups=groups, method="separable")
        expected = _torch_conv(x[None, :channels], weight, None, (1, 1), (1, 1), groups)[0]
        _assert_close(result, expected, x, weight)


def test_separable_refused_for_a_full_rank_bank():
    weight = np.random.default_rng(7).standard_normal((3, 1, 5, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="rank 1"):
        conv2d_valid(np.zeros((1, 9, 9), dtype=np.float32), weight, method="separable")


def test_nan_and_inf_propagate_like_torch():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 30, 31)).astype(np.float32)
    x[0, 1, 4, 7] = np.nan
    x[1, 0, 20, 3] = np.inf
    x[1, 2, 25:, 28:] = -np.inf
    weight = rng.standard_normal((5, 3, 7, 7)).astype(np.float32)  # large enough to tempt FFT
    expected = _torch_conv(x, weight, None, (1, 1), (1, 1), 1)
    assert choose_method(x.shape, weight, 1, 1, 1, finite=False) == "gemm"
    for method in ("auto", "gemm"):
        result = conv2d_valid(x, weight, method=method)
        np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
        np.testing.assert_array_equal(np.isposinf(result), np.isposinf(expected))
        finite = np.isfinite(expected)
        _assert_close(np.where(finite, result, 0), np.where(finite, expected, 0), np.nan_to_num(x), weight)
    for method in ("fft", "separable"):
        with pytest.raises(ValueError, match="NaN or Inf"):
            conv2d_valid(x, weight, method=method)


def test_choose_method_follows_the_cost_model():
    rng = np.random.default_rng(9)
    small = rng.standard_normal((16, 1, 3, 3)).astype(np.float32)
    large = rng.standard_normal((8, 1, 31, 31)).astype(np.float32)
    assert choose_method((1, 1024, 1024), small, 1, 1, 1) == "gemm"
    assert choose_method((1, 1024, 1024), large, 1, 1, 1) == "fft"
    assert choose_method((1, 1024, 1024), large, 1, 1, 1, finite=False) == "gemm"
    assert choose_method((1, 2048, 2048), _gaussian_bank(size=25, sigmas=(1, 2, 4)), 1, 1, 1) == "separable"


def test_gemm_tiles_cover_every_branch(monkeypatch):
    """Tiles of several images, of row bands, and of pieces of one row give the same result."""
    x, weight, bias = _case_arrays(10, (3,), 4, 6, 3, 3, 2, 11, 13)
    expected = _torch_conv(x, weight, bias, (1, 2), (2, 1), 2)
    per_pixel = 2 * 2 * 3 * 3 * 4  # groups * taps * itemsize
    for budget in (per_pixel * 7 * 9 * 2, per_pixel * 9 * 3, per_pixel * 4, 1):
        monkeypatch.setattr(gemm_module, "SCRATCH_BYTES", budget)
        result = conv2d_valid(x, weight, bias, stride=(1, 2), dilation=(2, 1), groups=2, method="gemm")
        _assert_close(result, expected, x, weight)


@pytest.mark.parametrize("n_filters", [6, 1])  # 1: one filter chunk, its spectra reused by equal bands
def test_fft_bands_and_filter_chunks(monkeypatch, n_filters):
    """Overlap-save bands along y and chunks of filters give the same result."""
    monkeypatch.setattr(fft_module, "scratch_budget", lambda input_bytes, output_bytes: 40_000)
    x, weight, bias = _case_arrays(11, (2,), 2, n_filters, 9, 5, 1, 60, 33)
    result = conv2d_valid(x, weight, bias, stride=(2, 1), dilation=(1, 2), method="fft")
    _assert_close(result, _torch_conv(x, weight, bias, (2, 1), (1, 2), 1), x, weight)


@pytest.mark.parametrize("method", ["gemm", "fft", "separable"])
def test_peak_memory_within_twice_input_plus_output(method):
    weight = _gaussian_bank(size=15, sigmas=(2.0, 3.0))
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
    _assert_close(result, _reference64(x, weight, None, (1, 1), (1, 1), 1), x, weight)


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, error, message",
    [
        ((5, 5), (1, 1, 3, 3), {}, InputError, r"shape \(\.\.\., C, H, W\)"),
        ((1, 5, 5), (1, 3, 3), {}, InputError, "weight must have shape"),
        ((2, 5, 5), (1, 1, 3, 3), {}, InputError, "expects 1 input channels"),
        ((3, 5, 5), (2, 1, 3, 3), {"groups": 3}, InputError, "groups=3 must divide"),
        ((1, 5, 5), (1, 1, 3, 3), {"groups": 0}, InputError, "groups must be a positive integer"),
        ((1, 5, 5), (1, 1, 6, 3), {}, InputError, "does not fit the padded input"),
        ((1, 5, 5), (1, 1, 3, 3), {"stride": 0}, InputError, "stride must be"),
        ((1, 5, 5), (1, 1, 3, 3), {"method": "winograd"}, InputError, "method must be one of"),
        ((1, 5, 5), (2, 1, 3, 3), {"bias": np.zeros(3)}, InputError, r"bias must have shape \(2,\)"),
    ],
)
def test_conv_refuses_bad_inputs(x_shape, w_shape, kwargs, error, message):
    with pytest.raises(error, match=message):
        conv2d_valid(np.zeros(x_shape, dtype=np.float32), np.zeros(w_shape, dtype=np.float32), **kwargs)


# ---------------------------------------------------------------------------------------------
# pooling and activations


@pytest.mark.parametrize("batch", [(), (2,), (2, 2)])
@pytest.mark.parametrize(
    "kernel, stride, padding", [((2, 2), (2, 2), (0, 0)), ((3, 2), (2, 3), (1, 1)), ((5, 5), (1, 1), (2, 2))]
)
def test_pools_match_torch(batch, kernel, stride, padding):
    rng = np.random.default_rng(13)
    x = rng.standard_normal(batch + (3, 17, 20)).astype(np.float32)
    x.reshape(-1)[::37] = np.nan
    images = torch.from_numpy(x.reshape((-1,) + x.shape[-3:]))
    widths = ((padding[0], padding[0]), (padding[1], padding[1]))
    for ours, theirs, fill in (
        (max_pool_valid, F.max_pool2d, -np.inf),
        (avg_pool_valid, F.avg_pool2d, 0.0),
    ):
        expected = theirs(images, kernel, stride, padding).numpy()
        result = ours(pad(x, widths, "constant", value=fill), kernel, stride)
        np.testing.assert_allclose(result, expected.reshape(batch + expected.shape[1:]), rtol=1e-6, atol=1e-6)
        assert result.dtype == np.float32


def test_pool_refuses_a_window_larger_than_the_input():
    with pytest.raises(InputError, match="does not fit"):
        max_pool_valid(np.zeros((3, 3), dtype=np.float32), 4, 1)


#: featuremap's activation names and their torch equivalents (shared with test_blockwise.py)
TORCH_ACTIVATIONS = {
    "none": lambda t: t,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "abs": torch.abs,
    "square": torch.square,
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_match_torch(name):
    x = np.concatenate([np.random.default_rng(14).standard_normal(50) * 10, [0, -100, 100, np.nan, np.inf, -np.inf]])
    x = x.astype(np.float32)
    expected = TORCH_ACTIVATIONS[name](torch.from_numpy(x.copy())).numpy()
    result = activate(name, x.copy())
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=2e-6, atol=1e-7)


def test_unknown_activation_is_an_input_error():
    with pytest.raises(InputError, match="activation must be one of none, relu"):
        activate("gelu", np.zeros(2, dtype=np.float32))


# ---------------------------------------------------------------------------------------------
# threading


def test_inline_and_threaded_tiles_agree_and_blas_threads_are_restored():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from concurrent.futures import ThreadPoolExecutor

    from featuremap._kernels._threads import blas_threads

    rng = np.random.default_rng(15)
    x = rng.standard_normal((2, 3, 150, 140)).astype(np.float32)
    weight = rng.standard_normal((8, 3, 5, 5)).astype(np.float32)
    bank = _gaussian_bank(size=9)
    before = blas_threads()
    threaded = conv2d_valid(x, weight, method="gemm"), conv2d_valid(x[:, :1], bank, method="separable")
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert blas_threads() == 1
        inline = conv2d_valid(x, weight, method="gemm"), conv2d_valid(x[:, :1], bank, method="separable")
    # BLAS may sum in another order with another thread count: equal to float32 rounding.
    _assert_close(threaded[0], inline[0].astype(np.float64), x, weight)
    _assert_close(threaded[1], inline[1].astype(np.float64), x, bank)
    # Concurrent calls share the single-thread BLAS limit and restore the setting at the end.
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: conv2d_valid(x, weight, method="gemm"), range(6)))
    for result in results:
        _assert_close(result, threaded[0].astype(np.float64), x, weight)
    assert blas_threads() == before
