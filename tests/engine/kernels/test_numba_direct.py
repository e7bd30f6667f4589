"""numba's direct loop (``method="numba"``, the ``fast`` extra): exact like the other paths against
PyTorch and the float64 reference (every case of ``test_conv.py``'s table runs it too), zero
padding skipped rather than copied, NaN/Inf kept to their windows, threads that split the
(image, filter) pairs, and the cost model taking it for depthwise layers only once numba pays."""

from __future__ import annotations

import numpy as np
import pytest
from support.procs import fresh_python
from support.torch_reference import assert_close, reference64, torch_conv

from featuremap.engine.kernels import choose_method, conv2d_valid, numba_direct, task_threads
from featuremap.errors import InputError

pytest.importorskip("numba", reason="the numba path needs the 'fast' extra")


def _padded(x, padding):
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + list(padding))


@pytest.mark.parametrize("seed", range(12))
def test_random_layers_with_zero_padding_match_torch(seed):
    """Random shapes, groups, strides, dilations, even kernels and asymmetric paddings (wider
    than the kernel too): the loop's skipped taps give torch's result on the padded input."""
    rng = np.random.default_rng(seed)
    groups = int(rng.integers(1, 4))
    per_group = int(rng.integers(1, 3))
    channels, n_filters = groups * int(rng.integers(1, 3)), groups * per_group
    kh, kw = (int(k) for k in rng.integers(1, 6, size=2))
    stride = tuple(int(s) for s in rng.integers(1, 4, size=2))
    dilation = tuple(int(d) for d in rng.integers(1, 3, size=2))
    padding = tuple(tuple(int(p) for p in rng.integers(0, 7, size=2)) for _ in range(2))
    height = int(rng.integers(kh * dilation[0], 40))
    width = int(rng.integers(kw * dilation[1], 41))
    batch = tuple(int(b) for b in rng.integers(1, 3, size=int(rng.integers(0, 3))))
    x = rng.standard_normal((*batch, channels, height, width)).astype(np.float32)
    weight = rng.standard_normal((n_filters, channels // groups, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(n_filters).astype(np.float32)
    result = conv2d_valid(
        x,
        weight,
        bias,
        stride=stride,
        dilation=dilation,
        groups=groups,
        method="numba",
        zero_padding=padding,
    )
    expected = torch_conv(_padded(x, padding), weight, bias, stride, dilation, groups)
    assert result.shape == expected.shape
    assert_close(result, expected, x, weight)
    assert_close(
        result,
        reference64(_padded(x, padding), weight, bias, stride, dilation, groups),
        x,
        weight,
    )


def test_nan_and_inf_stay_in_their_windows_like_the_gemm():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 31, 29)).astype(np.float32)
    x[0, 1, 4, 7] = np.nan
    x[1, 0, 20, 3] = np.inf
    x[1, 3, 25:, 20:] = -np.inf
    weight = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    padding = ((1, 1), (2, 0))
    for stride in ((1, 1), (2, 3)):
        expected = conv2d_valid(
            x, weight, stride=stride, groups=4, method="gemm", zero_padding=padding
        )
        result = conv2d_valid(
            x, weight, stride=stride, groups=4, method="numba", zero_padding=padding
        )
        np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
        np.testing.assert_array_equal(np.isposinf(result), np.isposinf(expected))
        np.testing.assert_array_equal(np.isneginf(result), np.isneginf(expected))
        finite = np.isfinite(expected)
        np.testing.assert_allclose(result[finite], expected[finite], rtol=1e-4, atol=1e-4)


def test_threads_split_the_pairs_without_changing_a_bit():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 16, 45, 37)).astype(np.float32)
    weight = rng.standard_normal((32, 1, 5, 5)).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        with task_threads(threads):
            results.append(
                conv2d_valid(x, weight, groups=16, method="numba", zero_padding=((2, 2), (2, 2)))
            )
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_cost_model_takes_numba_for_depthwise_layers_only(monkeypatch):
    monkeypatch.setattr(numba_direct, "worth_importing", lambda saving: True)
    rng = np.random.default_rng(5)
    depthwise = rng.standard_normal((64, 1, 3, 3)).astype(np.float32)
    assert choose_method((64, 258, 258), depthwise, (1, 1), (1, 1), 64) == "numba"
    wider = rng.standard_normal((128, 1, 5, 5)).astype(np.float32)
    assert choose_method((128, 516, 516), wider, (1, 1), (1, 1), 128) == "numba"
    # not: banks on an image's channels, even where the loop would be faster (one 33x33
    # filter: results of classical banks never depend on whether numba is imported), a dense
    # layer (a real GEMM)
    bank = rng.standard_normal((16, 1, 7, 7)).astype(np.float32)
    assert choose_method((1, 1030, 1030), bank, (1, 1), (1, 1), 1) == "gemm"
    single = rng.standard_normal((1, 1, 33, 33)).astype(np.float32)
    assert choose_method((1, 256, 256), single, (1, 1), (1, 1), 1, float64_spectra=True) == "gemm"
    dense = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    assert choose_method((16, 1026, 1026), dense, (1, 1), (1, 1), 1) == "gemm"


def test_without_numba_the_other_paths_run(monkeypatch):
    monkeypatch.setattr(numba_direct, "available", lambda: False)
    monkeypatch.setattr(numba_direct, "worth_importing", lambda saving: True)
    rng = np.random.default_rng(6)
    weight = rng.standard_normal((64, 1, 3, 3)).astype(np.float32)
    assert choose_method((64, 258, 258), weight, (1, 1), (1, 1), 64) == "gemm"
    x = rng.standard_normal((64, 20, 20)).astype(np.float32)
    with pytest.raises(InputError, match=r"needs numba \(pip install 'featuremap\[fast\]'\)"):
        conv2d_valid(x, weight, groups=64, method="numba")


def test_a_process_imports_numba_only_once_its_savings_pay_for_the_import():
    """A small job's depthwise layer runs on the GEMM; numba comes in once the time given up
    passes its import's cost, and every call after that takes it."""
    code = (
        "import sys, numpy as np; from featuremap.engine.kernels import conv2d_valid, "
        "numba_direct, choose_method\n"
        "x = np.ones((8, 34, 34), np.float32); w = np.ones((8, 1, 3, 3), np.float32)\n"
        "conv2d_valid(x, w, groups=8); first = 'numba' in sys.modules\n"
        "given_up = [numba_direct.worth_importing(0.2) for _ in range(3)]\n"
        "big = choose_method((64, 258, 258), np.ones((64, 1, 3, 3), np.float32), (1, 1), "
        "(1, 1), 64)\n"
        "print(first, given_up, 'numba' in sys.modules, big)"
    )
    assert fresh_python(code).strip() == "False [False, False, True] True numba"
