"""The optional torch (oneDNN) direct-convolution path of ``conv2d_valid`` (:mod:`.onednn`):
forced on through ``method="torch"``, it must match PyTorch and the float64 reference like the
NumPy paths (every case of the table: ``test_conv.py``, which runs each method); the cost model takes it only where it pays and never without torch."""

from __future__ import annotations

import numpy as np
import pytest
from support.procs import fresh_python
from support.torch_reference import (
    assert_close,
    case_arrays,
    reference64,
)

from featuremap.engine.kernels import choose_method, conv2d_valid, numba_direct, onednn
from featuremap.engine.kernels._namespace import finite_sum
from featuremap.errors import InputError


def test_torch_path_random_shapes_on_two_threads(monkeypatch):
    """Random shapes, strides, dilations, groups and even kernels, torch on two threads."""
    monkeypatch.setattr(onednn, "blas_threads", lambda: 2)
    rng = np.random.default_rng(24)
    for _ in range(12):
        groups = int(rng.choice([1, 2, 3]))
        channels, n_filters = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
        kh, kw = (int(k) for k in rng.integers(1, 8, size=2))
        stride = tuple(int(s) for s in rng.integers(1, 5, size=2))
        dilation = tuple(int(d) for d in rng.integers(1, 3, size=2))
        height = dilation[0] * (kh - 1) + 1 + int(rng.integers(0, 30))
        width = dilation[1] * (kw - 1) + 1 + int(rng.integers(0, 30))
        batch = (int(rng.integers(1, 3)),)
        x, weight, bias = case_arrays(
            int(rng.integers(1000)), batch, channels, n_filters, kh, kw, groups, height, width
        )
        result = conv2d_valid(
            x, weight, bias, stride=stride, dilation=dilation, groups=groups, method="torch"
        )
        expected = reference64(x, weight, bias, stride, dilation, groups)
        assert_close(result, expected, x, weight)


@pytest.mark.parametrize("threads", [1, 2])
def test_zero_padding_inside_torch_matches_a_padded_copy(monkeypatch, threads):
    """``zero_padding`` handed to torch (no padded copy): the float64 reference on the padded
    input; asymmetric padding (a padded copy) too, and every other method given the same
    padding."""
    monkeypatch.setattr(onednn, "blas_threads", lambda: threads)
    rng = np.random.default_rng(25 + threads)
    for _ in range(12):
        kh, kw = (int(k) for k in rng.integers(1, 12, size=2))
        stride = tuple(int(s) for s in rng.integers(1, 5, size=2))
        dilation = tuple(int(d) for d in rng.integers(1, 3, size=2))
        py, px = (int(p) for p in rng.integers(0, 7, size=2))
        height = max(1, dilation[0] * (kh - 1) + 1 - 2 * py) + int(rng.integers(0, 40))
        width = max(1, dilation[1] * (kw - 1) + 1 - 2 * px) + int(rng.integers(0, 40))
        x, weight, bias = case_arrays(
            int(rng.integers(1000)), (int(rng.integers(1, 3)),), 2, 3, kh, kw, 1, height, width
        )
        asymmetric = int(rng.integers(0, 3))
        padding = ((py, py + asymmetric), (px, px))
        padded = np.pad(x, ((0, 0), (0, 0), padding[0], padding[1]))
        expected = reference64(padded, weight, bias, stride, dilation, 1)
        for method in ("torch", "gemm", "auto"):
            result = conv2d_valid(
                x,
                weight,
                bias,
                stride=stride,
                dilation=dilation,
                method=method,
                zero_padding=padding,
            )
            assert_close(result, expected, x, weight)


def test_padded_torch_output_with_nan_falls_back_to_the_gemm_on_the_padded_input():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 3, 60, 61)).astype(np.float32)
    x[0, 2, 0, 0] = np.nan  # in the corner: only windows that overlap the padding see it
    weight = rng.standard_normal((8, 3, 11, 11)).astype(np.float32)
    padding = ((5, 5), (5, 5))
    expected = conv2d_valid(np.pad(x, ((0, 0), (0, 0), *padding)), weight, stride=(4, 4))
    result = conv2d_valid(x, weight, stride=(4, 4), method="torch", zero_padding=padding)
    np.testing.assert_array_equal(result, expected)
    assert np.isnan(result[0, :, 0, 0]).all()
    assert np.isfinite(result[0, :, 2:, 2:]).all()


def test_torch_threads_of_the_caller_are_restored():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 40, 40)).astype(np.float32)
    weight = rng.standard_normal((8, 3, 5, 5)).astype(np.float32)
    conv2d_valid(x, weight, stride=(2, 2), method="torch")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("method", ["torch", "auto"])
def test_nan_and_inf_fall_back_to_the_exact_gemm(method):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 80, 81)).astype(np.float32)
    x[0, 1, 4, 7] = np.nan
    x[1, 0, 40, 3] = np.inf
    x[1, 2, 70:, 60:] = -np.inf
    weight = rng.standard_normal((24, 3, 11, 11)).astype(np.float32)
    expected = conv2d_valid(x, weight, stride=(4, 4), method="gemm")
    result = conv2d_valid(x, weight, stride=(4, 4), method=method)
    np.testing.assert_array_equal(result, expected)  # NaN where expected has NaN, bit for bit


@pytest.mark.filterwarnings("ignore:overflow encountered in matmul:RuntimeWarning")  # the GEMM's
@pytest.mark.parametrize("method", ["torch", "polyphase"])
def test_an_input_smaller_than_the_output_is_the_one_checked(method):
    """7x7/2 3 -> 64: the input (3 channels) is checked instead of the output (64): a NaN or
    an infinity there still sends the call to the exact GEMM, and an input too large to bound
    the output away from overflow still has its output checked."""
    rng = np.random.default_rng(11)
    weight = rng.standard_normal((64, 3, 7, 7)).astype(np.float32)
    for value in (np.nan, np.inf):
        x = rng.standard_normal((3, 60, 61)).astype(np.float32)
        x[1, 30, 17] = value
        expected = conv2d_valid(x, weight, stride=(2, 2), method="gemm")
        result = conv2d_valid(x, weight, stride=(2, 2), method=method)
        np.testing.assert_array_equal(result, expected)
    huge = rng.standard_normal((3, 60, 61)).astype(np.float32) * np.float32(1e37)
    expected = conv2d_valid(huge, weight, stride=(2, 2), method="gemm")
    result = conv2d_valid(huge, weight, stride=(2, 2), method=method)
    np.testing.assert_array_equal(np.isfinite(result), np.isfinite(expected))
    assert not np.isfinite(expected).all()  # the case overflows somewhere


def test_cost_model_takes_torch_for_strided_or_many_channel_layers_only(monkeypatch):
    monkeypatch.setattr(onednn, "worth_importing", lambda saving: True)
    monkeypatch.setattr(numba_direct, "available", lambda: False)  # depthwise: test_numba_direct
    rng = np.random.default_rng(9)
    alexnet = rng.standard_normal((24, 3, 11, 11)).astype(np.float32)
    assert choose_method((3, 1034, 1034), alexnet, (4, 4), (1, 1), 1) == "torch"
    assert choose_method((8, 3, 237, 237), alexnet, (4, 4), (1, 1), 1) == "torch"
    # a learned stride-1 layer of many channels, where oneDNN beats OpenBLAS's SGEMM
    learned = rng.standard_normal((32, 32, 5, 5)).astype(np.float32)
    assert choose_method((32, 260, 260), learned, (1, 1), (1, 1), 1) == "torch"
    # not: stride 1 on few channels (classical banks: their results must not depend on
    # whether torch is imported), large outputs, 1x1, depthwise, kernels for the FFT,
    # non-finite input
    few = rng.standard_normal((32, 8, 5, 5)).astype(np.float32)
    assert choose_method((8, 260, 260), few, (1, 1), (1, 1), 1) == "gemm"
    wide = rng.standard_normal((16, 1, 7, 7)).astype(np.float32)
    assert choose_method((1, 2054, 2054), wide, (1, 1), (1, 1), 1) == "gemm"
    deep = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    assert choose_method((16, 1026, 1026), deep, (1, 1), (1, 1), 1) == "gemm"
    pointwise = rng.standard_normal((128, 64, 1, 1)).astype(np.float32)
    assert choose_method((64, 256, 256), pointwise, (1, 1), (1, 1), 1) == "gemm"
    depthwise = rng.standard_normal((64, 1, 3, 3)).astype(np.float32)
    assert choose_method((64, 258, 258), depthwise, (1, 1), (1, 1), 64) == "gemm"
    large = rng.standard_normal((8, 1, 31, 31)).astype(np.float32)
    assert choose_method((1, 1054, 1054), large, (1, 1), (1, 1), 1) == "fft"
    assert choose_method((3, 1034, 1034), alexnet, (4, 4), (1, 1), 1, finite=False) == "gemm"


def test_without_torch_the_numpy_paths_run(monkeypatch):
    monkeypatch.setattr(onednn, "available", lambda: False)
    rng = np.random.default_rng(10)
    weight = rng.standard_normal((24, 3, 11, 11)).astype(np.float32)
    assert choose_method((3, 1034, 1034), weight, (4, 4), (1, 1), 1) == "gemm"
    x = rng.standard_normal((3, 50, 50)).astype(np.float32)
    with pytest.raises(InputError, match="needs PyTorch"):
        conv2d_valid(x, weight, stride=(4, 4), method="torch")


def test_importing_the_kernels_does_not_import_torch():
    code = (
        "import sys, featuremap.engine.kernels as k, numpy as np; "
        "k.conv2d_valid(np.ones((1, 9, 9), np.float32), np.ones((2, 1, 3, 3), np.float32)); "
        "print('torch' in sys.modules)"
    )
    assert fresh_python(code).strip() == "False"


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_finite_sum_sees_every_non_finite_value(value):
    out = np.ones((2, 3, 4, 5), dtype=np.float32)
    assert finite_sum(out)
    assert finite_sum(out[:0])
    out[1, 2, 3, 4] = value
    assert not finite_sum(out)
    out[:] = value
    assert not finite_sum(out)


def test_a_process_imports_torch_only_once_its_savings_pay_for_the_import():
    """The default pipeline's 15x15/2 Gabor on a 526^2 block would be faster through torch, but
    a small job must not pay torch's import on every worker: the first calls take the NumPy
    path and torch comes in once the time given up passes the import's cost."""
    code = (
        "import sys, numpy as np; from featuremap.engine.kernels import conv2d_valid, onednn; "
        "x = np.ones((1, 526, 526), np.float32); w = np.ones((16, 1, 15, 15), np.float32); "
        "conv2d_valid(x, w, stride=(2, 2)); first = 'torch' in sys.modules\n"
        "given_up = [onednn.worth_importing(0.4) for _ in range(4)]\n"
        "import torch\n"
        "print(first, given_up, onednn.worth_importing(1e-9))"
    )
    assert fresh_python(code).strip() == "False [False, False, False, True] True"
