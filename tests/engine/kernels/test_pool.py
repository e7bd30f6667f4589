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
