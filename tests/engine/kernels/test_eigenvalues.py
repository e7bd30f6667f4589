"""``featuremap.engine.kernels.eigenvalues`` against ``numpy.linalg.eigvalsh`` in float64."""

from __future__ import annotations

import numpy as np
import pytest

from featuremap.engine.kernels import (
    derivative_orders,
    symmetric_eigenvalues,
    tensor_components,
    tensor_size,
)
from featuremap.engine.kernels import eigenvalues as module
from featuremap.errors import InputError

N = 20_000


def components(matrices: np.ndarray) -> np.ndarray:
    """``(..., d, d)`` symmetric matrices -> their unique components on the first axis."""
    ndim = matrices.shape[-1]
    return np.stack([matrices[..., a, b] for a, b in tensor_components(ndim)])


def symmetric(rng: np.random.Generator, ndim: int, count: int = N) -> np.ndarray:
    a = rng.standard_normal((count, ndim, ndim))
    return a + np.swapaxes(a, -1, -2)


def with_eigenvalues(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    """Randomly rotated matrices with the given eigenvalues ``(count, ndim)``."""
    q, _ = np.linalg.qr(rng.standard_normal((*values.shape, values.shape[-1])))
    return q @ (values[..., None] * np.swapaxes(q, -1, -2))


def cases(ndim: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(ndim)
    diagonal = np.zeros((N, ndim, ndim))
    index = np.arange(ndim)
    diagonal[:, index, index] = rng.standard_normal((N, ndim))
    repeated = np.repeat(rng.standard_normal((N, 1)), ndim, axis=1)
    repeated[:, 0] += rng.standard_normal(N)
    nearly = np.repeat(rng.standard_normal((N, 1)), ndim, axis=1)
    nearly[:, -1] += 1e-9 * rng.standard_normal(N)
    vectors = rng.standard_normal((N, ndim))
    return {
        "random": symmetric(rng, ndim),
        "diagonal": diagonal,
        "diagonal with repeats": np.round(diagonal),
        "repeated eigenvalue": with_eigenvalues(rng, repeated),
        "nearly repeated": with_eigenvalues(rng, nearly),
        "multiple of identity": with_eigenvalues(rng, np.repeat(repeated[:, 1:2], ndim, axis=1)),
        "rank 1": vectors[:, :, None] * vectors[:, None, :] * rng.standard_normal((N, 1, 1)),
        "near-diagonal": diagonal + 1e-9 * symmetric(rng, ndim),
        "large offset": 1e6 * np.eye(ndim) + symmetric(rng, ndim),
        "tiny": 1e-30 * symmetric(rng, ndim),
        "huge": 1e30 * symmetric(rng, ndim),
        "zero": np.zeros((8, ndim, ndim)),
    }


@pytest.mark.parametrize("ndim", [2, 3])
def test_matches_eigvalsh_relative_to_the_norm(ndim):
    for name, matrices in cases(ndim).items():
        expected = np.linalg.eigvalsh(matrices)[:, ::-1]
        got = symmetric_eigenvalues(components(matrices)).T
        assert got.dtype == np.float64
        norm = np.maximum(np.linalg.norm(matrices, axis=(-2, -1)), 1e-300)
        error = np.max(np.abs(got - expected).max(axis=-1) / norm)
        assert error < 1e-13, f"{name}: {error:.2e}"
        assert (np.diff(got, axis=-1) <= 0).all(), f"{name}: not descending"


def test_the_order_of_the_components_and_of_the_derivatives():
    assert tensor_components(2) == [(0, 0), (0, 1), (1, 1)]  # yy, yx, xx
    assert tensor_components(3) == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    assert derivative_orders(2) == [(2, 0), (1, 1), (0, 2)]
    assert derivative_orders(3) == [
        (2, 0, 0),
        (1, 1, 0),
        (1, 0, 1),
        (0, 2, 0),
        (0, 1, 1),
        (0, 0, 2),
    ]
    assert (tensor_size(2), tensor_size(3)) == (3, 6)
    # [zz, zy, zx, yy, yx, xx] = [4, 1, 0, 3, 0, 7]: the x axis is an eigenvector with 7
    got = symmetric_eigenvalues(np.array([4.0, 1.0, 0.0, 3.0, 0.0, 7.0]))
    np.testing.assert_allclose(got, [7.0, 3.5 + np.sqrt(1.25), 3.5 - np.sqrt(1.25)])


def test_any_axis_any_shape_dtype_and_many_chunks(monkeypatch):
    monkeypatch.setattr(module, "CHUNK", 64)  # many chunks, a short last one
    rng = np.random.default_rng(5)
    matrices = symmetric(rng, 3, 2 * 5 * 37).reshape(2, 5, 37, 3, 3)
    stacked = np.moveaxis(components(matrices), 0, 2).astype(np.float32)  # (2, 5, 6, 37)
    got = symmetric_eigenvalues(stacked, axis=2, dtype=np.float32)
    assert got.shape == (2, 5, 3, 37)
    assert got.dtype == np.float32
    expected = np.linalg.eigvalsh(matrices.astype(np.float32).astype(np.float64))[..., ::-1]
    np.testing.assert_allclose(np.moveaxis(got, 2, -1), expected, rtol=1e-6, atol=1e-5)
    assert symmetric_eigenvalues(np.zeros((3, 0))).shape == (2, 0)


def test_nan_propagates_quietly():
    t = np.array([[1.0, np.nan, 2.0], [np.nan, 1.0, 1.0]]).T  # (3, 2) 2-D tensors
    assert np.isnan(symmetric_eigenvalues(t)).all()
    t3 = np.zeros((6, 2))
    t3[2, 0] = np.nan
    with np.errstate(all="raise"):
        got = symmetric_eigenvalues(t3)
    assert np.isnan(got[:, 0]).all()
    np.testing.assert_array_equal(got[:, 1], [0.0, 0.0, 0.0])


def test_refusals():
    with pytest.raises(InputError, match=r"3 \(2-D\) or 6 \(3-D\) unique components, got 4"):
        symmetric_eigenvalues(np.zeros((4, 2)))
    with pytest.raises(InputError, match="2x2 or 3x3 tensors, got ndim 4"):
        tensor_components(4)
