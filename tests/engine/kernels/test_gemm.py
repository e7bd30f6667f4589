"""The GEMM path's patch strategies (``featuremap.engine.kernels.gemm``): column phases for strided
convolutions, group blocks for many small groups (depthwise), the 1x1 shortcut, even tiles, and
the cost model and finiteness check around them (``featuremap.engine.kernels.conv``), against a float64
direct reference and PyTorch."""

from __future__ import annotations

import itertools
import math
import tracemalloc

import numpy as np
import pytest
import threadpoolctl
from support.torch_reference import assert_close, case_arrays, reference64, torch_conv

from featuremap.engine.kernels import choose_method, conv2d_valid
from featuremap.engine.kernels import conv as conv_module
from featuremap.engine.kernels import cost as cost_module
from featuremap.engine.kernels import gemm as gemm_module
from featuremap.engine.kernels.conv import estimate_seconds
from featuremap.engine.kernels.gemm import column_phases, gemm_conv, patch_path, use_phases


def _random_case(seed):
    """Batch axes, groups, odd/even kernels, strides (also beyond the kernel), dilations and
    sizes that no stride divides, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    batch = tuple(int(n) for n in rng.integers(1, 3, size=rng.integers(0, 3)))
    groups = int(rng.choice([1, 2, 3]))
    channels = groups * int(rng.integers(1, 4))
    n_filters = groups * int(rng.integers(1, 4))
    kh, kw = (int(k) for k in rng.integers(1, 9, size=2))
    stride = tuple(int(s) for s in rng.integers(1, 6, size=2))
    dilation = tuple(int(d) for d in rng.integers(1, 4, size=2))
    height = dilation[0] * (kh - 1) + 1 + int(rng.integers(0, 23))
    width = dilation[1] * (kw - 1) + 1 + int(rng.integers(0, 23))
    x = rng.standard_normal((*batch, channels, height, width)).astype(np.float32)
    weight = rng.standard_normal((n_filters, channels // groups, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(n_filters).astype(np.float32)
    return x, weight, bias, stride, dilation, groups


def _gemm(x, weight, stride, dilation, groups, phases):
    images = x.reshape((-1, *x.shape[-3:]))
    n_filters, _, kh, kw = weight.shape
    out_h = (x.shape[-2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (x.shape[-1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.empty((images.shape[0], n_filters, out_h, out_w), dtype=np.float32)
    gemm_conv(images, weight, stride, dilation, groups, out, phases=phases)
    return out.reshape((*x.shape[:-3], *out.shape[1:]))


@pytest.mark.parametrize("seed", range(40))
def test_phases_and_im2col_match_the_float64_reference(seed):
    x, weight, _, stride, dilation, groups = _random_case(seed)
    expected = reference64(x, weight, None, stride, dilation, groups)
    for phases in (False, True):
        assert_close(_gemm(x, weight, stride, dilation, groups, phases), expected, x, weight)


@pytest.mark.parametrize("seed", range(40, 60))
def test_auto_and_gemm_match_torch_on_random_strided_cases(seed):
    x, weight, bias, stride, dilation, groups = _random_case(seed)
    expected = torch_conv(x, weight, bias, stride, dilation, groups)
    for method in ("auto", "gemm"):
        result = conv2d_valid(
            x, weight, bias, stride=stride, dilation=dilation, groups=groups, method=method
        )
        assert_close(result, expected, x, weight)


@pytest.mark.parametrize(
    ("budget", "min_pixels"),
    [
        (4 << 20, 8192),  # defaults
        (4 << 20, 1 << 30),  # one group per tile
        (3000, 1),  # bands of a few rows, all groups
        (300, 1 << 30),  # pieces of one row, one group each
    ],
)
@pytest.mark.parametrize("phases", [False, True])
def test_tiles_and_group_blocks_cover_the_output(monkeypatch, budget, min_pixels, phases):
    """Every tiling (whole images, row bands, pieces of a row; all groups or blocks of them)
    with and without phases gives the reference result."""
    monkeypatch.setattr(gemm_module, "SCRATCH_BYTES", budget)
    monkeypatch.setattr(gemm_module, "MIN_PIXELS", min_pixels)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 29, 31)).astype(np.float32)
    weight = rng.standard_normal((6, 2, 5, 4)).astype(np.float32)
    expected = reference64(x, weight, None, (2, 3), (1, 2), 3)
    assert_close(_gemm(x, weight, (2, 3), (1, 2), 3, phases), expected, x, weight)


def test_depthwise_group_blocks_match_torch(monkeypatch):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 16, 40, 37)).astype(np.float32)
    weight = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)  # channel multiplier 2
    monkeypatch.setattr(gemm_module, "SCRATCH_BYTES", 16 * 9 * 4 * 500)
    monkeypatch.setattr(gemm_module, "MIN_PIXELS", 1500)
    assert patch_path(weight.shape, (1, 1), 16) == "im2col/4 groups"  # 5 at most, evened
    for stride in ((1, 1), (2, 2)):
        expected = torch_conv(x, weight, None, stride, (1, 1), 16)
        assert_close(conv2d_valid(x, weight, stride=stride, groups=16), expected, x, weight)


def test_column_phases_cover_every_tap_once():
    for kw, sx, dx in itertools.product(range(1, 13), range(1, 6), range(1, 5)):
        seen = []
        for q, first, step, taps in column_phases(kw, sx, dx):
            for m, kx in enumerate(taps):
                # tap kx reads input column ox * sx + kx * dx == (ox + first + m * step) * sx + q
                assert kx * dx == (first + m * step) * sx + q
            seen += taps
        assert sorted(seen) == list(range(kw))


def test_phases_are_used_where_the_kernel_is_large_against_the_stride(monkeypatch):
    assert use_phases((24, 3, 11, 11), (4, 4))  # AlexNet's first layer
    assert use_phases((64, 3, 7, 7), (2, 2))
    assert use_phases((8, 8, 2, 2), (2, 2))
    assert not use_phases((8, 8, 3, 3), (3, 3))
    assert not use_phases((8, 8, 7, 7), (2, 1))  # no column stride: rows need no phases
    assert patch_path((24, 3, 11, 11), (4, 4), 1) == "phases"
    assert patch_path((64, 64, 1, 1), (1, 1), 1) == "1x1"
    assert patch_path((64, 1, 3, 3), (1, 1), 64) == "im2col/13 groups"
    calls = []
    original = gemm_module.column_phases
    monkeypatch.setattr(
        gemm_module, "column_phases", lambda *args: calls.append(args) or original(*args)
    )
    x = np.random.default_rng(5).standard_normal((3, 45, 45)).astype(np.float32)
    weight = np.random.default_rng(6).standard_normal((4, 3, 11, 11)).astype(np.float32)
    result = conv2d_valid(x, weight, stride=(4, 4))
    assert calls == [(11, 4, 1)]  # auto took the phases
    assert_close(result, torch_conv(x, weight, None, (4, 4), (1, 1), 1), x, weight)


def test_one_by_one_reads_the_input_in_place(monkeypatch):
    """A 1x1 stride-1 convolution copies no patches (unless the input is not contiguous)."""
    copies = []
    original = np.copyto
    monkeypatch.setattr(np, "copyto", lambda *args, **kw: copies.append(1) or original(*args, **kw))
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 8, 13, 11)).astype(np.float32)
    weight = rng.standard_normal((6, 4, 1, 1)).astype(np.float32)
    result = conv2d_valid(x, weight, groups=2, method="gemm")
    assert copies == []
    assert_close(result, torch_conv(x, weight, None, (1, 1), (1, 1), 2), x, weight)
    sliced = conv2d_valid(x[..., ::2], weight, groups=2, method="gemm")  # copied: not a view
    assert copies
    assert_close(sliced, torch_conv(x[..., ::2], weight, None, (1, 1), (1, 1), 2), x, weight)


@pytest.mark.parametrize(
    ("weight_shape", "stride", "groups"),
    [
        ((4, 3, 11, 11), (4, 4), 1),  # phases
        ((4, 3, 3, 3), (3, 3), 1),  # strided im2col
        ((6, 1, 3, 3), (1, 1), 6),  # depthwise
        ((4, 6, 1, 1), (1, 1), 1),  # 1x1 in place
    ],
)
def test_nan_and_inf_propagate_like_torch_on_every_patch_path(weight_shape, stride, groups):
    rng = np.random.default_rng(8)
    channels = weight_shape[1] * groups
    x = rng.standard_normal((2, channels, 40, 41)).astype(np.float32)
    x[0, 0, 5, 9] = np.nan
    x[1, -1, 20, 3] = np.inf
    x[1, 0, 30:, 35:] = -np.inf
    weight = rng.standard_normal(weight_shape).astype(np.float32)
    weight[0, 0, 0, 0] = 0.0  # 0 * inf = NaN, also in torch
    expected = torch_conv(x, weight, None, stride, (1, 1), groups)
    assert np.isnan(expected).any()
    assert np.isinf(expected).any()
    for method in ("auto", "gemm"):
        result = conv2d_valid(x, weight, stride=stride, groups=groups, method=method)
        np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
        np.testing.assert_array_equal(np.isposinf(result), np.isposinf(expected))
        np.testing.assert_array_equal(np.isneginf(result), np.isneginf(expected))


def test_auto_checks_finiteness_only_where_another_method_would_win(monkeypatch):
    checks = []
    original = conv_module._finite
    monkeypatch.setattr(conv_module, "_finite", lambda x: checks.append(1) or original(x))
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 300, 300)).astype(np.float32)
    small = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    conv2d_valid(x, small)
    assert checks == []  # the GEMM is exact for NaN/Inf: no pass over the input
    large = rng.standard_normal((2, 1, 41, 41)).astype(np.float32)
    assert choose_method(x.shape, large, (1, 1), (1, 1), 1) == "fft"
    x[0, 100, 100] = np.nan
    result = conv2d_valid(x, large)
    assert checks == [1]
    expected = torch_conv(x, large, None, (1, 1), (1, 1), 1)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    assert np.isnan(result).sum() == 41 * 41 * 2  # only the windows that hold the NaN


def test_cost_model_charges_strided_gathers_and_phases():
    shape = (3, 1034, 1034)
    large = (24, 3, 11, 11)
    phases = estimate_seconds("gemm", shape, large, (4, 4), (1, 1), 1)
    flops = 2 * 256 * 256 * 24 * 3 * 121 / cost_module.GEMM_FLOPS
    contiguous = 256 * 256 * 3 * 121 * cost_module.PATCH_SECONDS
    strided = 256 * 256 * 3 * 121 * cost_module.STRIDED_SECONDS
    assert flops + contiguous < phases < flops + strided
    # no phases where the kernel is small against the stride: every element strided
    small = estimate_seconds("gemm", shape, (24, 3, 3, 3), (3, 3), (1, 1), 1)
    pixels = 344 * 344
    expected = (
        2 * pixels * 24 * 27 / cost_module.GEMM_FLOPS + pixels * 27 * cost_module.STRIDED_SECONDS
    )
    assert math.isclose(small, expected)
    # a 1x1 stride-1 convolution copies nothing
    one = estimate_seconds("gemm", (64, 256, 256), (128, 64, 1, 1), (1, 1), (1, 1), 1)
    assert math.isclose(one, 2 * 256 * 256 * 128 * 64 / cost_module.GEMM_FLOPS)


def test_even_tiles_have_no_short_remainder():
    assert gemm_module._even(57, 50) == 29
    assert gemm_module._even(10, 3) == 3  # 3 + 3 + 3 + 1 is as few parts as 4 can be
    assert gemm_module._even(8, 8) == 8
    assert gemm_module._even(5, 0) == 1
    for total, most in itertools.product(range(1, 40), range(1, 12)):
        step = gemm_module._even(total, most)
        parts = math.ceil(total / step)
        assert step <= most
        assert parts == math.ceil(total / most)
        assert total - (parts - 1) * step >= step - parts  # sizes differ by a little at most


def test_phase_scratch_stays_bounded():
    """The column phases add a copy of each tile's input band, not of the whole input."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 1034, 1034)).astype(np.float32)
    weight = rng.standard_normal((24, 3, 11, 11)).astype(np.float32)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # two tiles at a time
        conv2d_valid(x[:, :100, :100], weight, stride=(4, 4))  # warm up
        tracemalloc.start()
        result = conv2d_valid(x, weight, stride=(4, 4))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # the output plus two threads' patches and phase bands of about SCRATCH_BYTES each
    assert peak <= result.nbytes + 2 * 2 * gemm_module.SCRATCH_BYTES, peak
    assert peak < x.nbytes + result.nbytes


def test_gemm_tiles_cover_every_branch(monkeypatch):
    """Tiles of several images, of row bands, and of pieces of one row give the same result."""
    x, weight, bias = case_arrays(10, (3,), 4, 6, 3, 3, 2, 11, 13)
    expected = torch_conv(x, weight, bias, (1, 2), (2, 1), 2)
    per_pixel = 2 * 2 * 3 * 3 * 4  # groups * taps * itemsize
    for budget in (per_pixel * 7 * 9 * 2, per_pixel * 9 * 3, per_pixel * 4, 1):
        monkeypatch.setattr(gemm_module, "SCRATCH_BYTES", budget)
        result = conv2d_valid(
            x, weight, bias, stride=(1, 2), dilation=(2, 1), groups=2, method="gemm"
        )
        assert_close(result, expected, x, weight)
