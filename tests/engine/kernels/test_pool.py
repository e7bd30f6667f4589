"""``featuremap.engine.kernels.pool``: max and average pooling against torch."""

from __future__ import annotations

import numpy as np
import pytest

from featuremap.engine.kernels import avg_pool_valid, max_pool_valid, pad
from featuremap.errors import InputError

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("batch", [(), (2,), (2, 2)])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [((2, 2), (2, 2), (0, 0)), ((3, 2), (2, 3), (1, 1)), ((5, 5), (1, 1), (2, 2))],
)
def test_pools_match_torch(batch, kernel, stride, padding):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((*batch, 3, 17, 20)).astype(np.float32)
    x.reshape(-1)[::37] = np.nan
    images = torch.from_numpy(x.reshape((-1, *x.shape[-3:])))
    widths = ((padding[0], padding[0]), (padding[1], padding[1]))
    for ours, theirs, fill in (
        (max_pool_valid, F.max_pool2d, -np.inf),
        (avg_pool_valid, F.avg_pool2d, 0.0),
    ):
        expected = theirs(images, kernel, stride, padding).numpy()
        result = ours(pad(x, widths, "constant", value=fill), kernel, stride)
        np.testing.assert_allclose(
            result, expected.reshape(batch + expected.shape[1:]), rtol=1e-6, atol=1e-6
        )
        assert result.dtype == np.float32


def test_pool_refuses_a_window_larger_than_the_input():
    with pytest.raises(InputError, match="does not fit"):
        max_pool_valid(np.zeros((3, 3), dtype=np.float32), (4, 4), (1, 1))


def _torch_pool3d(pool, x, *args, **kwargs):
    """``pool`` (max_pool3d / avg_pool3d) in float64 on ``(..., C, D, H, W)``."""
    volumes = torch.from_numpy(x.reshape((-1, *x.shape[-4:])).astype(np.float64))
    result = pool(volumes, *args, **kwargs).numpy()
    return result.reshape(x.shape[:-4] + result.shape[1:])


@pytest.mark.parametrize("batch", [(), (2,), (2, 2)])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation"),
    [
        ((2, 2, 2), (2, 2, 2), (0, 0, 0), (1, 1, 1)),
        ((3, 2, 4), (2, 3, 1), (1, 1, 2), (1, 1, 1)),
        ((1, 3, 3), (1, 2, 2), (0, 1, 1), (1, 2, 1)),
        ((3, 3, 3), (1, 1, 1), (1, 0, 1), (2, 1, 1)),
    ],
)
def test_pools_3d_match_torch(batch, kernel, stride, padding, dilation):
    rng = np.random.default_rng(14)
    x = rng.standard_normal((*batch, 2, 9, 11, 12)).astype(np.float32)
    x.reshape(-1)[::53] = np.nan
    widths = ((0, 0),) * (x.ndim - 3) + tuple((p, p) for p in padding)
    expected_max = _torch_pool3d(F.max_pool3d, x, kernel, stride, padding, dilation)
    result = max_pool_valid(np.pad(x, widths, constant_values=-np.inf), kernel, stride, dilation)
    np.testing.assert_allclose(result, expected_max, rtol=1e-6, atol=1e-6)
    assert result.dtype == np.float32
    expected_avg = _torch_pool3d(F.avg_pool3d, x, kernel, stride, padding)
    result = avg_pool_valid(np.pad(x, widths), kernel, stride)
    np.testing.assert_allclose(result, expected_avg, rtol=1e-5, atol=1e-6)


def test_avg_pool_3d_divisor_number_and_array():
    x = np.random.default_rng(15).standard_normal((3, 8, 9, 10)).astype(np.float32)
    kernel, stride, padding = (2, 3, 3), (2, 2, 2), (1, 1, 1)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (1, 1)))
    override = _torch_pool3d(F.avg_pool3d, x[None], kernel, stride, padding, divisor_override=5)
    np.testing.assert_allclose(
        avg_pool_valid(padded, kernel, stride, 5), override[0], rtol=1e-5, atol=1e-6
    )
    # count_include_pad=False: each output divided by its taps inside the input, per axis
    counts = [
        np.minimum(np.arange(n_out) * s - 1 + k, n) - np.maximum(np.arange(n_out) * s - 1, 0)
        for n, k, s, n_out in zip(x.shape[1:], kernel, stride, override.shape[-3:], strict=True)
    ]
    divisor = counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]
    expected = _torch_pool3d(
        F.avg_pool3d, x[None], kernel, stride, padding, count_include_pad=False
    )[0]
    np.testing.assert_allclose(
        avg_pool_valid(padded, kernel, stride, divisor), expected, rtol=1e-5, atol=1e-6
    )


def test_pool_3d_refusals():
    with pytest.raises(InputError, match=r"shape \(\.\.\., D, H, W\)"):
        avg_pool_valid(np.zeros((3, 3), dtype=np.float32), (2, 2, 2), (1, 1, 1))
    with pytest.raises(InputError, match="along z"):
        max_pool_valid(np.zeros((2, 5, 5), dtype=np.float32), (3, 2, 2), (1, 1, 1))
    with pytest.raises(ValueError, match="as many of each"):
        max_pool_valid(np.zeros((5, 5, 5), dtype=np.float32), (2, 2, 2), (1, 1))
