"""``featuremap.conv3d`` / ``max_pool3d`` / ``avg_pool3d`` against torch 2.13 in float64, on NumPy
and on Dask arrays chunked so that no chunk size divides anything; torch's refusals are
refusals here."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from support.torch_reference import torch

import featuremap
from featuremap.errors import InputError

# (batch, C, J, kernel, stride, dilation, groups, padding, padding_mode, (D, H, W))
CONV3D_CASES = [
    ((1,), 1, 4, (3, 3, 3), 1, 1, 1, 1, "zeros", (9, 12, 11)),
    ((2,), 4, 6, (2, 3, 4), (2, 1, 3), (1, 2, 1), 2, "same", "reflect", (11, 13, 17)),
    ((), 3, 3, (3, 1, 5), (1, 2, 2), 1, 3, (1, 0, 2), "replicate", (7, 10, 15)),  # depthwise
    ((1,), 2, 5, (1, 1, 1), 1, 1, 1, 0, "zeros", (5, 6, 7)),  # 1x1x1
    (
        (2,),
        2,
        3,
        (5, 4, 3),
        (3, 2, 1),
        (1, 1, 2),
        1,
        ((2, 1), (1, 2), (0, 3)),
        "zeros",
        (13, 9, 12),
    ),
    ((1,), 2, 2, (3, 3, 3), 2, (2, 1, 1), 1, (2, 1, 1), "circular", (10, 8, 9)),
]


def _pairs(padding, kernel, stride, dilation, size):
    """``(lo, hi)`` per axis z, y, x: explicit pairs, one width per axis, or ``"same"`` by
    DESIGN section 1 (torch's rule at stride 1, TensorFlow's beyond, which torch refuses)."""
    if padding == "same":
        pairs = []
        for n, k, s, d in zip(size, kernel, _three(stride), _three(dilation), strict=True):
            total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
            pairs.append((total // 2, total - total // 2))
        return pairs
    return [p if isinstance(p, tuple) else (p, p) for p in _three(padding)]


def _three(value):
    return tuple(value) if isinstance(value, tuple) else (value,) * 3


def _torch_conv3d(x, weight, bias, stride, padding, dilation, groups, mode):
    """torch's conv3d in float64 on ``(N, C, D, H, W)``, the padding applied by ``F.pad`` in
    ``mode`` first, as torch's ``Conv3d`` module does for modes other than zeros."""
    t = torch()
    F = t.nn.functional
    pairs = _pairs(padding, weight.shape[2:], stride, dilation, x.shape[-3:])
    flat = [width for lo, hi in reversed(pairs) for width in (lo, hi)]
    padded = F.pad(
        t.from_numpy(x.astype(np.float64)), flat, mode="constant" if mode == "zeros" else mode
    )
    weight64, bias64 = (t.from_numpy(a.astype(np.float64)) for a in (weight, bias))
    return F.conv3d(padded, weight64, bias64, stride, 0, dilation, groups).numpy()


def _case(seed, batch, channels, n_filters, kernel, groups, size):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*batch, channels, *size)).astype(np.float32)
    weight = rng.standard_normal((n_filters, channels // groups, *kernel)).astype(np.float32)
    return x, weight, rng.standard_normal(n_filters).astype(np.float32)


def _assert_close(result, expected, x, weight):
    """Within 1e-5 of each output's scale, ``sum |w| * max |x|`` (float32 accumulation)."""
    scale = np.abs(weight.astype(np.float64)).sum(axis=(1, 2, 3, 4))[:, None, None, None]
    assert result.shape == expected.shape
    error = np.abs(np.asarray(result, dtype=np.float64) - expected)
    assert np.all(error <= 1e-5 * scale * max(np.abs(x).max(), 1.0)), float(error.max())


@pytest.mark.parametrize("case", range(len(CONV3D_CASES)))
def test_conv3d_equals_torch_on_numpy_and_on_odd_dask_chunks(case):
    batch, channels, n_filters, kernel, stride, dilation, groups, padding, mode, size = (
        CONV3D_CASES[case]
    )
    x, weight, bias = _case(case, batch, channels, n_filters, kernel, groups, size)
    images = x.reshape((-1, *x.shape[-4:]))
    expected = _torch_conv3d(images, weight, bias, stride, padding, dilation, groups, mode)
    expected = expected.reshape((*batch, *expected.shape[1:]))
    arguments = (weight, bias, stride, padding, dilation, groups)
    ours = featuremap.conv3d(x, *arguments, padding_mode=mode)
    _assert_close(ours, expected, x, weight)
    chunks = (*(1,) * len(batch), channels, 4, 5, 7)  # divide no size, stride or kernel
    lazy = featuremap.conv3d(da.from_array(x, chunks=chunks), *arguments, padding_mode=mode)
    assert isinstance(lazy, da.Array)
    _assert_close(lazy.compute(), expected, x, weight)


def test_per_axis_padding_modes_fold_each_axis_its_own_way():
    """``{z: reflect, y: replicate, x: circular}`` pads each axis as torch's ``F.pad`` of that
    mode would, axis by axis (z first), on NumPy and in Dask blocks."""
    t = torch()
    F = t.nn.functional
    x, weight, bias = _case(7, (1,), 2, 3, (3, 5, 3), 1, (8, 9, 10))
    modes = {"z": "reflect", "y": "replicate", "x": "circular"}
    padded = t.from_numpy(x.astype(np.float64))
    for axis, (mode, width) in enumerate(zip(modes.values(), (1, 2, 1), strict=True)):
        flat = [0, 0] * (2 - axis) + [width, width] + [0, 0] * axis
        padded = F.pad(padded, flat, mode=mode)
    expected = F.conv3d(
        padded, t.from_numpy(weight.astype(np.float64)), t.from_numpy(bias.astype(np.float64))
    ).numpy()
    ours = featuremap.conv3d(x, weight, bias, padding="same", padding_mode=modes)
    _assert_close(ours, expected, x, weight)
    lazy = featuremap.conv3d(
        da.from_array(x, chunks=(1, 2, 3, 4, 3)), weight, bias, padding="same", padding_mode=modes
    )
    _assert_close(lazy.compute(), expected, x, weight)


# (kernel, stride, padding, dilation, ceil_mode, (D, H, W))
MAX_CASES = [
    (2, None, 0, 1, False, (8, 9, 10)),
    ((3, 2, 3), (2, 1, 2), (1, 1, 0), (1, 2, 1), True, (9, 11, 8)),
    ((2, 3, 2), 3, (1, 1, 1), 2, True, (10, 7, 13)),
]

# (kernel, stride, padding, ceil_mode, count_include_pad, divisor_override, (D, H, W))
AVG_CASES = [
    (2, None, 0, False, True, None, (8, 9, 10)),
    ((3, 2, 3), (2, 1, 2), (1, 1, 0), True, False, None, (9, 11, 8)),
    ((2, 3, 2), 3, (1, 1, 1), True, True, None, (10, 7, 13)),
    ((3, 3, 3), 2, 1, False, False, 5, (7, 8, 9)),
]


def _pool_check(ours_for, expected, chunks, x):
    np.testing.assert_allclose(ours_for(x), expected, rtol=1e-5, atol=1e-6)
    lazy = ours_for(da.from_array(x, chunks=chunks))
    np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", MAX_CASES)
def test_max_pool3d_equals_torch(case):
    kernel, stride, padding, dilation, ceil_mode, size = case
    x = np.random.default_rng(1).standard_normal((2, 3, *size)).astype(np.float32)
    expected = (
        torch()
        .nn.functional.max_pool3d(
            torch().from_numpy(x.astype(np.float64)), kernel, stride, padding, dilation, ceil_mode
        )
        .numpy()
    )
    _pool_check(
        lambda a: featuremap.max_pool3d(a, kernel, stride, padding, dilation, ceil_mode),
        expected,
        (1, 3, 3, 4, 3),
        x,
    )


@pytest.mark.parametrize("case", AVG_CASES)
def test_avg_pool3d_equals_torch(case):
    kernel, stride, padding, ceil_mode, include, divisor, size = case
    x = np.random.default_rng(2).standard_normal((2, 3, *size)).astype(np.float32)
    expected = (
        torch()
        .nn.functional.avg_pool3d(
            torch().from_numpy(x.astype(np.float64)),
            kernel,
            stride,
            padding,
            ceil_mode,
            include,
            divisor,
        )
        .numpy()
    )
    _pool_check(
        lambda a: featuremap.avg_pool3d(a, kernel, stride, padding, ceil_mode, include, divisor),
        expected,
        (2, 3, 4, 5, 3),
        x,
    )


def test_torch_tensors_go_in_and_come_out():
    t = torch()
    generator = t.Generator().manual_seed(0)
    x = t.randn(1, 2, 6, 7, 8, generator=generator)
    weight = t.randn(3, 2, 3, 3, 2, generator=generator)
    ours = featuremap.conv3d(x, weight, None, 1, 1)
    assert isinstance(ours, t.Tensor)
    t.testing.assert_close(
        ours, t.nn.functional.conv3d(x, weight, None, 1, 1), rtol=1e-5, atol=1e-5
    )
    t.testing.assert_close(
        featuremap.max_pool3d(x, 2, 1, 1), t.nn.functional.max_pool3d(x, 2, 1, 1)
    )
    t.testing.assert_close(
        featuremap.avg_pool3d(x, 3, 2, 1), t.nn.functional.avg_pool3d(x, 3, 2, 1)
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: featuremap.conv3d(x, np.ones((2, 1, 3, 3))), "conv3d takes 3-D kernels"),
        (lambda x: featuremap.conv2d(x, np.ones((2, 1, 3, 3, 3))), "conv2d takes 2-D kernels"),
        (lambda x: featuremap.max_pool3d(x, [2, 2]), "max_pool3d takes 3-D kernels"),
        (
            lambda x: featuremap.conv3d(
                x, np.ones((2, 1, 3, 3, 3)), padding=(4, 0, 0), padding_mode="reflect"
            ),
            "reflect padding 4 along z",
        ),
        (
            lambda x: featuremap.max_pool3d(x, (2, 2, 2), padding=(0, 2, 0)),
            "at most half the kernel",
        ),
        (
            lambda x: featuremap.avg_pool3d(x, 2, divisor_override=0),
            "divisor_override must not be zero",
        ),
        (lambda x: featuremap.conv3d(x, np.ones((2, 1, 9, 3, 3))), "does not fit"),
        (
            lambda x: featuremap.conv3d(x, np.ones((2, 1, 3, 3, 3)), padding_mode={"w": "reflect"}),
            "padding_mode names axis 'w'",
        ),
    ],
)
def test_torch_refusals_are_refusals(call, message):
    """Each of torch's refusals (wrong kernel rank, reflect padding >= the axis, pool padding
    over half the kernel, divisor 0, a kernel larger than the padded input) is one InputError."""
    x = np.zeros((1, 1, 4, 5, 6), np.float32)
    with pytest.raises(InputError, match=message):
        call(x)
