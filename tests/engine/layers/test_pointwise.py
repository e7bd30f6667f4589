"""Pointwise ops (``featuremap.engine.layers.pointwise``): every op against NumPy, the
eigenvalues against ``numpy.linalg.eigvalsh`` in float64 (descending, NaN propagating), written
into views of one output on 2-D and 3-D inputs."""

from __future__ import annotations

import numpy as np
import pytest

from featuremap.engine.layers.pointwise import PointwiseOp, write_eigenvalues
from featuremap.errors import InputError


def eigvalsh_descending(components: np.ndarray) -> np.ndarray:
    """``(3|6, ...)`` unique components -> ``(2|3, ...)`` eigenvalues, float64, largest first."""
    ndim = 2 if len(components) == 3 else 3
    pairs = [(a, b) for a in range(ndim) for b in range(a, ndim)]
    tensor = np.empty((*components.shape[1:], ndim, ndim))
    for values, (a, b) in zip(components.astype(np.float64), pairs, strict=True):
        tensor[..., a, b] = tensor[..., b, a] = values
    return np.moveaxis(np.linalg.eigvalsh(tensor)[..., ::-1], -1, 0)


OPS = (
    PointwiseOp("copy", (2,)),
    PointwiseOp("sum", (0, 1, 2)),
    PointwiseOp("difference", (3, 1)),
    PointwiseOp("magnitude", (0, 4)),
    PointwiseOp("product", (1, 5)),
    PointwiseOp("eigenvalues", (0, 1, 2)),
    PointwiseOp("eigenvalues", (0, 1, 2, 3, 4, 5)),
)


def expected(x: np.ndarray, axis: int) -> np.ndarray:
    c = [np.take(x, i, axis=axis).astype(np.float64) for i in range(x.shape[axis])]
    parts = [
        c[2],
        c[0] + c[1] + c[2],
        c[3] - c[1],
        np.sqrt(c[0] ** 2 + c[4] ** 2),
        c[1] * c[5],
        *eigvalsh_descending(np.stack(c[:3])),
        *eigvalsh_descending(np.stack(c[:6])),
    ]
    return np.stack(parts, axis=axis)


@pytest.mark.parametrize("shape", [(6, 33, 40), (6, 9, 20, 21)])
def test_every_op_in_order(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    axis = 0
    outputs = sum(op.outputs for op in OPS)
    assert outputs == 1 + 1 + 1 + 1 + 1 + 2 + 3
    result = np.full((outputs, *shape[1:]), np.nan, np.float32)
    position = 0
    for op in OPS:
        op.write([x[i] for i in op.inputs], list(result[position : position + op.outputs]))
        position += op.outputs
    reference = expected(x, axis)
    scale = np.abs(reference).max()
    np.testing.assert_allclose(result, reference, rtol=0, atol=2e-6 * float(scale))


def test_eigenvalues_are_float64_inside_and_propagate_nan():
    rng = np.random.default_rng(1)
    # nearly rank-1 tensors: the small eigenvalue is ~1e-4 of the large one
    g = rng.standard_normal((2, 50, 60)).astype(np.float32)
    components = np.stack([g[0] * g[0], g[0] * g[1], g[1] * g[1]]) + np.float32(1e-4)
    components[1, 3, 4] = np.nan
    out = np.empty((2, 50, 60), np.float32)
    write_eigenvalues(list(components), list(out))
    reference = eigvalsh_descending(components)
    assert np.isnan(out[:, 3, 4]).all()
    assert np.isnan(out).sum() == 2
    finite = ~np.isnan(out)
    error = np.abs(out[finite] - reference[finite]) / np.abs(reference[finite]).clip(1e-4)
    assert error.max() < 1e-6


def test_bad_ops_and_channels_are_refused():
    with pytest.raises(InputError, match="cannot take the inputs"):
        PointwiseOp("difference", (0,))
    with pytest.raises(InputError, match="3 \\(2-D\\) or 6 \\(3-D\\)"):
        PointwiseOp("eigenvalues", (0, 1))
