"""The shape checks of ``conv2d_valid`` and ``conv3d_valid`` (``featuremap.engine.kernels.shapes``):
one line naming the call, the shapes and what would fit."""

from __future__ import annotations

import numpy as np
import pytest

from featuremap.engine.kernels import conv2d_valid, conv3d_valid
from featuremap.errors import InputError


@pytest.mark.parametrize(
    ("conv", "x_shape", "w_shape", "groups", "message"),
    [
        (
            conv2d_valid,
            (5, 5),
            (1, 1, 3, 3),
            1,
            r"conv2d input must have shape \(\.\.\., C, H, W\)",
        ),
        (
            conv2d_valid,
            (1, 5, 5),
            (1, 3, 3),
            1,
            r"conv2d weight must have shape \(J, C/groups, kh, kw\)",
        ),
        (
            conv3d_valid,
            (1, 5, 5),
            (1, 1, 3, 3, 3),
            1,
            r"conv3d input must have shape \(\.\.\., C, D, H, W\)",
        ),
        (
            conv3d_valid,
            (1, 4, 5, 5),
            (1, 1, 3, 3),
            1,
            r"\(J, C/groups, kz, ky, kx\), got shape \(1, 1, 3, 3\)",
        ),
        (
            conv3d_valid,
            (3, 4, 5, 5),
            (2, 1, 3, 3, 3),
            3,
            r"groups=3 must divide the input channels \(3\) and the filters \(2\)",
        ),
        (
            conv2d_valid,
            (2, 5, 5),
            (1, 1, 3, 3),
            1,
            r"expects 1 input channels with groups=1, but the input has 2",
        ),
        (
            conv3d_valid,
            (1, 4, 5, 5),
            (1, 1, 3, 3, 3),
            0,
            r"groups must be a positive integer, got 0",
        ),
        (conv3d_valid, (1, 4, 5, 5), (1, 1, 0, 3, 3), 1, r"conv3d weight must not be empty"),
    ],
)
def test_inconsistent_shapes_are_one_line(conv, x_shape, w_shape, groups, message):
    with pytest.raises(InputError, match=message) as error:
        conv(np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32), groups=groups)
    assert "\n" not in str(error.value)
