"""The separable path's trimming and row passes (``featuremap.engine.kernels.separable``): a bank of
Gaussian derivatives at several sigmas zero-padded to the largest (the pixel features' first
stage) equals a float64 direct convolution with strides, dilations, channels and groups; every
filter is trimmed to its own taps, wide row filters run banded and narrow ones share an im2col
pass; one-tap filters copy exactly; the tiles cover every image and row once."""

from __future__ import annotations

import numpy as np
import pytest
from support.torch_reference import assert_close, reference64

from featuremap.banks.fastfilters import fastfilters_kernel_1d
from featuremap.engine.kernels import conv2d_valid, separable
from featuremap.engine.kernels.separable import plan_separable


def padded_bank(sigmas=(0.7, 1.6, 5.0), orders=((0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2))):
    """fastfilters2's Gaussian derivatives, each centred in the largest kernel's square."""
    kernels = [
        np.outer(fastfilters_kernel_1d(s, oy), fastfilters_kernel_1d(s, ox))
        for s in sigmas
        for oy, ox in orders
    ]
    size = max(max(k.shape) for k in kernels)
    bank = np.zeros((len(kernels), 1, size, size))
    for out, kernel in zip(bank, kernels, strict=True):
        top, left = ((size - n) // 2 for n in kernel.shape)
        out[0, top : top + kernel.shape[0], left : left + kernel.shape[1]] = kernel
    return bank.astype(np.float32)


@pytest.mark.parametrize(("stride", "dilation"), [((1, 1), (1, 1)), ((2, 3), (1, 2))])
def test_a_padded_bank_equals_the_direct_convolution(stride, dilation):
    weight = padded_bank()
    x = np.random.default_rng(0).standard_normal((2, 1, 90, 97)).astype(np.float32)
    result = conv2d_valid(x, weight, stride=stride, dilation=dilation, method="separable")
    assert_close(result, reference64(x, weight, None, stride, dilation, 1), x, weight)


def test_several_channels_and_groups():
    bank = padded_bank(sigmas=(0.7, 2.0), orders=((0, 0), (1, 1), (0, 2)))  # 6 filters, 13^2
    weight = np.concatenate([bank, 2 * bank[::-1]], axis=1)  # (6, 2, 13, 13), each slice rank 1
    x = np.random.default_rng(1).standard_normal((3, 4, 40, 45)).astype(np.float32)
    for groups, channels in ((1, 2), (2, 4)):
        result = conv2d_valid(x[:, :channels], weight, groups=groups, method="separable")
        expected = reference64(x[:, :channels], weight, None, (1, 1), (1, 1), groups)
        assert_close(result, expected, x, weight)


def test_every_filter_is_trimmed_to_its_own_taps():
    (plan,) = plan_separable(padded_bank(), 1)
    passes = separable._row_passes(plan)
    # 3 sigmas x 3 distinct row filters (orders 0, 1, 2), each served by its own columns
    assert sum(len(p.weights) for p in passes) == 9
    radii = {len(fastfilters_kernel_1d(s, o)) for s in (0.7, 1.6, 5.0) for o in range(3)}
    for p in passes:
        if p.banded:
            assert p.weights.shape[1] in radii
        for users in p.columns:
            assert all(len(c.taps) in radii for c in users)
    # the widest (sigma 5: 31, 37, 41 taps) run banded; sigma 0.7's and 1.6's (7 to 15 taps)
    # share one im2col pass over the widest one's 15 taps
    assert sorted(p.weights.shape[1] for p in passes if p.banded) == [31, 37, 41]
    (shared,) = [p for p in passes if not p.banded]
    assert shared.weights.shape == (6, 15)


def test_one_tap_filters_copy_exactly():
    weight = np.zeros((3, 1, 9, 9), np.float32)
    weight[0, 0, 4, 4] = 1.0
    weight[1, 0, 4, 4] = 2.0
    weight[2, 0, 4, 1:8] = fastfilters_kernel_1d(1.0, 0)
    x = np.random.default_rng(2).standard_normal((1, 30, 31)).astype(np.float32)
    result = conv2d_valid(x, weight, method="separable")
    np.testing.assert_array_equal(result[0], x[0, 4:-4, 4:-4])
    np.testing.assert_array_equal(result[1], 2 * x[0, 4:-4, 4:-4])
    assert_close(result, reference64(x, weight, None, (1, 1), (1, 1), 1), x, weight)


def test_small_calls_run_inline(monkeypatch):
    monkeypatch.setattr(separable, "blas_threads", lambda: 2)
    assert separable._tile_sizes(52, 38, 456, 1, 11, 52 * 38 * 38) == (52, 38)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(
    ("images", "rows", "row_bytes", "span"),
    [(1, 2048, 8192, 81), (1, 10, 8192, 3), (40, 38, 456, 11), (3, 500, 1 << 20, 7)],
)
def test_tiles_cover_every_image_and_row(monkeypatch, threads, images, rows, row_bytes, span):
    monkeypatch.setattr(separable, "blas_threads", lambda: threads)
    pixels = images * rows * 2048
    step_images, step_rows = separable._tile_sizes(images, rows, row_bytes, 1, span, pixels)
    assert 1 <= step_images <= images
    assert 1 <= step_rows <= max(rows, separable.COLUMN_BLOCK)
    tiles = -(-images // step_images) * -(-rows // step_rows)
    assert tiles >= min(threads, images * -(-rows // separable.COLUMN_BLOCK))
    if images == 1 and rows > 4 * span * threads:
        assert step_rows >= separable.BAND_SPANS * span  # few rows read twice


def test_plans_are_remembered_by_value():
    weight = padded_bank(sigmas=(1.0,))
    first = plan_separable(weight, 1)
    assert plan_separable(weight.copy(), 1) is first
    assert plan_separable(2 * weight, 1) is not first


def test_without_banded_rows_as_on_cupy(monkeypatch):
    """CuPy shares im2col row passes only (every banded GEMM would be a kernel launch): the
    same result."""
    (plan,) = plan_separable(padded_bank(), 1)
    assert not any(p.banded and p.weights.shape[1] > 1 for p in separable._row_passes(plan, False))
    original = separable._row_passes
    monkeypatch.setattr(
        separable, "_row_passes", lambda plan, banded_rows=True: original(plan, False)
    )
    weight = padded_bank()
    x = np.random.default_rng(3).standard_normal((1, 1, 60, 70)).astype(np.float32)
    result = conv2d_valid(x, weight, method="separable")
    assert_close(result, reference64(x, weight, None, (1, 1), (1, 1), 1), x, weight)
