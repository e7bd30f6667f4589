"""``featuremap.engine.kernels.conv3d_valid`` against ``torch.nn.functional.conv3d`` in float64:
both folds (``filters``, ``channels``) over strides, dilations, groups, even and 1x1x1 kernels
and batch axes; rank-1 banks through the separable path (forced and chosen); NaN/Inf; refusals."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy.ndimage._filters import _gaussian_kernel1d
from support.torch_reference import torch

from featuremap.engine.kernels import conv3d, conv3d_valid, separable3d
from featuremap.engine.kernels.conv3d import choose_method
from featuremap.errors import InputError

# (batch, C, J, kernel, stride, dilation, groups, (D, H, W))
CASES = [
    ((), 1, 4, (3, 3, 3), (1, 1, 1), (1, 1, 1), 1, (9, 10, 11)),
    ((2,), 4, 6, (2, 3, 4), (2, 1, 3), (1, 2, 1), 2, (13, 12, 15)),  # even kernel sizes
    ((2, 3), 3, 3, (3, 1, 2), (3, 2, 1), (2, 1, 1), 3, (11, 9, 8)),  # depthwise, batch axes
    ((), 8, 4, (1, 1, 1), (1, 1, 1), (1, 1, 1), 1, (5, 6, 7)),  # 1x1x1
    ((), 2, 2, (4, 3, 3), (2, 2, 2), (1, 1, 1), 1, (4, 7, 6)),  # kernel as deep as the input
    ((), 2, 4, (3, 3, 3), (3, 1, 1), (2, 1, 1), 2, (17, 8, 9)),  # z stride and dilation
    ((1,), 6, 4, (2, 2, 2), (4, 5, 3), (1, 1, 1), 2, (13, 14, 15)),  # stride beyond the kernel
    ((), 5, 7, (5, 5, 5), (1, 1, 1), (1, 1, 1), 1, (7, 9, 8)),
]


def torch_conv3d(x, weight, bias=None, stride=(1, 1, 1), dilation=(1, 1, 1), groups=1):
    """float64 ``torch.nn.functional.conv3d`` on ``(..., C, D, H, W)``."""
    t = torch()
    volumes = t.from_numpy(x.reshape((-1, *x.shape[-4:])).astype(np.float64))
    b = None if bias is None else t.from_numpy(bias.astype(np.float64))
    result = t.nn.functional.conv3d(
        volumes,
        t.from_numpy(weight.astype(np.float64)),
        b,
        stride=stride,
        dilation=dilation,
        groups=groups,
    )
    return result.numpy().reshape(x.shape[:-4] + tuple(result.shape[1:]))


def assert_close(result, expected):
    """float32 ``result`` within 1e-5 of each filter's largest response (NaN/Inf where expected)."""
    assert result.dtype == np.float32
    assert result.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(result), np.isposinf(expected))
    finite = np.isfinite(expected)
    scale = np.abs(np.where(finite, expected, 0)).max(axis=(-3, -2, -1), keepdims=True)
    with np.errstate(invalid="ignore"):
        error = np.abs(np.where(finite, result - expected, 0))
    assert np.all(error <= 1e-5 * np.maximum(scale, 1e-30)), float((error / scale).max())


def case_arrays(seed, batch, channels, n_filters, kernel, groups, shape):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*batch, channels, *shape)).astype(np.float32)
    weight = rng.standard_normal((n_filters, channels // groups, *kernel)).astype(np.float32)
    return x, weight, rng.standard_normal(n_filters).astype(np.float32)


def gaussian_bank3d(sigmas=(1.0, 1.6), truncate=3.0):
    """Gaussian derivatives of orders ``oz + oy + ox <= 2`` per sigma from SciPy's 1-D kernels
    (mirrored: correlation weights), zero-padded to the largest radius: every kernel rank 1."""
    radius = int(truncate * max(sigmas) + 0.5)
    filters = []
    for sigma in sigmas:
        own = int(truncate * sigma + 0.5)
        kernels = [np.pad(_gaussian_kernel1d(sigma, o, own)[::-1], radius - own) for o in range(3)]
        filters += [
            np.einsum("i,j,k->ijk", kernels[oz], kernels[oy], kernels[ox])
            for oz in range(3)
            for oy in range(3 - oz)
            for ox in range(3 - oz - oy)
        ]
    return np.stack(filters)[:, None].astype(np.float32)


def outer_bank(seed, n_filters, group_channels, kernel):
    """Random rank-1 kernels ``a (x) b (x) c``, some ``z`` filters shared (up to sign and scale)."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(kernel[0])
    weight = np.empty((n_filters, group_channels, *kernel))
    for j in range(n_filters):
        for c in range(group_channels):
            z = shared * rng.choice([-2.0, 0.5]) if (j + c) % 2 else rng.standard_normal(kernel[0])
            y, x = rng.standard_normal(kernel[1]), rng.standard_normal(kernel[2])
            weight[j, c] = np.einsum("i,j,k->ijk", z, y, x)
    return weight.astype(np.float32)


@pytest.mark.parametrize("method", ["auto", "gemm", "fft"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_conv3d_matches_torch(case, method):
    batch, channels, n_filters, kernel, stride, dilation, groups, shape = CASES[case]
    x, weight, bias = case_arrays(case, batch, channels, n_filters, kernel, groups, shape)
    result = conv3d_valid(
        x, weight, bias, stride=stride, dilation=dilation, groups=groups, method=method
    )
    assert_close(result, torch_conv3d(x, weight, bias, stride, dilation, groups))


@pytest.mark.parametrize("fold", ["filters", "channels"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_both_folds_match_torch(case, fold, monkeypatch):
    batch, channels, n_filters, kernel, stride, dilation, groups, shape = CASES[case]
    x, weight, bias = case_arrays(50 + case, batch, channels, n_filters, kernel, groups, shape)
    monkeypatch.setattr(
        conv3d, "estimate_seconds", lambda method, *_: 0.0 if method == fold else 1.0
    )
    assert choose_method(x.shape, weight, stride, dilation, groups) == fold
    monkeypatch.setattr(separable3d, "SLAB_BYTES", 2000)  # several chunks of planes
    result = conv3d_valid(x, weight, bias, stride=stride, dilation=dilation, groups=groups)
    assert_close(result, torch_conv3d(x, weight, bias, stride, dilation, groups))


@pytest.mark.parametrize("method", ["auto", "separable"])
@pytest.mark.parametrize(
    ("stride", "dilation"), [((1, 1, 1), (1, 1, 1)), ((2, 1, 3), (1, 2, 1)), ((1, 2, 1), (2, 1, 1))]
)
def test_gaussian_bank_matches_torch(stride, dilation, method):
    weight = gaussian_bank3d()  # 20 filters of 5^3 (sigma 1, trimmed from 7^3) and 7^3
    x = np.random.default_rng(3).standard_normal((1, 1, 30, 33, 31)).astype(np.float32)
    result = conv3d_valid(x, weight, stride=stride, dilation=dilation, method=method)
    assert_close(result, torch_conv3d(x, weight, None, stride, dilation))


def test_separable_path_is_chosen_and_deduplicates_filters():
    weight = gaussian_bank3d()
    x_shape = (1, 1, 40, 64, 64)
    assert choose_method(x_shape, weight, (1, 1, 1), (1, 1, 1), 1) == "separable"
    assert choose_method(x_shape, weight, (1, 1, 1), (1, 1, 1), 1, finite=False) != "separable"
    (plan,) = separable3d.plan_separable3d(weight, 1)
    # per sigma: 3 z filters (orders 0, 1, 2) serving 6 + 3 + 1 filters, with 3 + 2 + 1 x filters
    assert [len(f.outputs) for f in plan.filters] == [6, 3, 1, 6, 3, 1]
    assert [len(p.rows) for f in plan.filters for p in f.plans] == [3, 2, 1, 3, 2, 1]
    assert [(len(f.taps), f.size) for f in plan.filters[:3]] == [(7, (7, 7))] * 3  # trimmed


def test_choose_method_follows_the_cost_model():
    rng = np.random.default_rng(9)
    one_channel = rng.standard_normal((16, 1, 3, 3, 3)).astype(np.float32)
    many_channels = rng.standard_normal((16, 16, 3, 3, 3)).astype(np.float32)
    ones = (1, 1, 1)
    assert choose_method((1, 1, 66, 130, 130), one_channel, ones, ones, 1) == "channels"
    assert choose_method((1, 16, 34, 130, 130), many_channels, ones, ones, 1) == "filters"
    with pytest.raises(InputError, match="expects 16 input channels"):
        choose_method((1, 8, 34, 130, 130), many_channels, ones, ones, 1)


@pytest.mark.parametrize("method", ["auto", "separable"])
def test_rank1_bank_with_channels_groups_and_batch_axes(method):
    weight = outer_bank(4, 6, 2, (3, 4, 5))
    x = np.random.default_rng(5).standard_normal((2, 4, 11, 12, 13)).astype(np.float32)
    result = conv3d_valid(x, weight, groups=2, stride=(1, 2, 1), method=method)
    assert_close(result, torch_conv3d(x, weight, None, (1, 2, 1), (1, 1, 1), 2))


def test_separable_refused_for_a_full_rank_bank_and_for_nan():
    weight = np.random.default_rng(6).standard_normal((2, 1, 3, 3, 3)).astype(np.float32)
    x = np.zeros((1, 12, 12, 12), dtype=np.float32)
    with pytest.raises(ValueError, match="rank 1"):
        conv3d_valid(x, weight, method="separable")
    x[0, 5, 5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        conv3d_valid(x, gaussian_bank3d(), method="separable")


@pytest.mark.parametrize("weight", ["random", "gaussian"])
def test_nan_and_inf_propagate_like_torch(weight):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 1, 16, 17, 18)).astype(np.float32)
    x[0, 0, 4, 7, 9] = np.nan
    x[1, 0, 12, 3, 3] = np.inf
    x[1, 0, 14:, 15:, 16:] = -np.inf
    w = gaussian_bank3d() if weight == "gaussian" else rng.standard_normal((5, 1, 3, 4, 3))
    w = w.astype(np.float32)
    expected = torch_conv3d(x, w)
    for method in ("auto", "gemm"):
        assert_close(conv3d_valid(x, w, method=method), expected)
    with pytest.raises(ValueError, match="NaN or Inf"):
        conv3d_valid(x, w, method="fft")


def test_conv3d_converts_other_dtypes_to_float32():
    x = np.arange(2 * 5 * 6 * 7).reshape(2, 5, 6, 7)
    weight = np.ones((3, 2, 2, 3, 2))
    result = conv3d_valid(x, weight)
    assert_close(result, torch_conv3d(x, weight))


@pytest.mark.parametrize("bank", ["random", "gaussian"])
def test_scratch_is_bounded_whatever_the_depth(bank, monkeypatch):
    monkeypatch.setattr(separable3d, "SLAB_BYTES", 1 << 20)
    rng = np.random.default_rng(10)
    weight = (
        rng.standard_normal((8, 4, 3, 3, 3)).astype(np.float32)
        if bank == "random"
        else np.tile(gaussian_bank3d(), (1, 4, 1, 1, 1))
    )
    extra = []
    for depth in (24, 96):
        x = rng.standard_normal((4, depth + 10, 40, 40)).astype(np.float32)
        conv3d_valid(x[:, :12], weight)  # warm up
        tracemalloc.start()
        result = conv3d_valid(x, weight)
        extra.append(tracemalloc.get_traced_memory()[1] - result.nbytes)
        tracemalloc.stop()
    assert extra[1] < 1.5 * extra[0], extra


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs", "message"),
    [
        ((5, 5, 5), (1, 1, 3, 3, 3), {}, r"shape \(\.\.\., C, D, H, W\)"),
        ((1, 5, 5, 5), (1, 1, 3, 3), {}, r"weight must have shape \(J, C/groups, kz, ky, kx\)"),
        ((2, 5, 5, 5), (1, 1, 3, 3, 3), {}, "expects 1 input channels"),
        ((3, 5, 5, 5), (2, 1, 3, 3, 3), {"groups": 3}, "groups=3 must divide"),
        ((1, 5, 5, 5), (1, 1, 3, 3, 3), {"groups": 0}, "groups must be a positive integer"),
        ((1, 5, 5, 5), (1, 1, 1, 6, 3), {}, "does not fit the padded input"),
        ((1, 5, 5, 5), (1, 1, 3, 3, 3), {"stride": (1, 1)}, "stride needs 3 values"),
        ((1, 5, 5, 5), (1, 1, 3, 3, 3), {"method": "winograd"}, "method must be one of"),
        ((1, 5, 5, 5), (1, 1, 3, 3, 3), {"method": "direct"}, "needs a CuPy array"),
        ((1, 5, 5, 5), (2, 1, 3, 3, 3), {"bias": np.zeros(3)}, r"bias must have shape \(2,\)"),
    ],
)
def test_conv3d_refuses_bad_inputs(x_shape, w_shape, kwargs, message):
    with pytest.raises(InputError, match=message):
        conv3d_valid(
            np.zeros(x_shape, dtype=np.float32), np.zeros(w_shape, dtype=np.float32), **kwargs
        )
