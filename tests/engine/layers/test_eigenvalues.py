"""The ``eigenvalues`` layer kind: per group of tensor components, the eigenvalues, descending."""

from __future__ import annotations

import numpy as np
import pytest
from support.pointwise import chunked_equals_in_memory, conv, image

from featuremap.engine.kernels import tensor_components
from featuremap.engine.layers import ConvLayer, EigenvaluesLayer, PoolLayer
from featuremap.engine.stack import apply_stack, resolve_stack
from featuremap.errors import InputError


def eigvalsh_reference(x: np.ndarray, ndim: int) -> np.ndarray:
    """numpy's eigenvalues of each group of components of ``x`` ``(B, G*K, *spatial)``,
    descending, as ``(B, G*ndim, *spatial)``."""
    pairs = tensor_components(ndim)
    groups = x.shape[1] // len(pairs)
    spatial = x.shape[2:]
    tensors = np.zeros((x.shape[0], groups, *spatial, ndim, ndim))
    for k, (a, b) in enumerate(pairs):
        component = x[:, k :: len(pairs)].astype(np.float64)
        tensors[..., a, b] = tensors[..., b, a] = component
    values = np.linalg.eigvalsh(tensors)[..., ::-1]  # (B, G, *spatial, ndim)
    values = np.moveaxis(values, -1, 2)  # (B, G, ndim, *spatial)
    return values.reshape(x.shape[0], groups * ndim, *spatial)


@pytest.mark.parametrize("ndim", [2, 3])
def test_values_match_eigvalsh_on_blocks_with_batch_axes(ndim):
    size = len(tensor_components(ndim))
    x = image(ndim, channels=2 * size, seed=ndim)  # two tensors per pixel
    x[(1, 0, *(0,) * ndim)] = np.nan
    layer = EigenvaluesLayer.create(ndim)
    stack = [PoolLayer.create("max", 1, ndim=ndim), layer]  # the identity, of the rank
    got = apply_stack(stack, x)
    assert got.dtype == np.float32
    assert got.shape == (2, 2 * ndim, *x.shape[2:])
    assert layer.out_channels(2 * size) == 2 * ndim
    finite = x.copy()
    finite[(1, 0, *(0,) * ndim)] = 0
    expected = eigvalsh_reference(finite, ndim)
    expected[(1, slice(0, ndim), *(0,) * ndim)] = np.nan  # only the NaN pixel's own tensor
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert (np.diff(got[0].reshape(2, ndim, -1), axis=1) <= 0).all()


@pytest.mark.parametrize("ndim", [2, 3])
def test_chunks_agree_after_a_conv(ndim):
    size = len(tensor_components(ndim))
    layers = [conv(ndim, 1, size), EigenvaluesLayer.create(ndim)]
    got = chunked_equals_in_memory(layers, image(ndim))
    assert got.shape[1] == ndim


def test_a_known_3d_tensor():
    # [zz, zy, zx, yy, yx, xx] = [4, 1, 0, 3, 0, 7]: x is an eigenvector with 7
    x = np.array([4, 1, 0, 3, 0, 7], np.float32).reshape(6, 1, 1, 1)
    got = apply_stack([EigenvaluesLayer.create(3)], x)[:, 0, 0, 0]
    np.testing.assert_allclose(got, [7.0, 3.5 + np.sqrt(1.25), 3.5 - np.sqrt(1.25)], rtol=1e-6)


def test_rank_described_labelled_and_refused():
    layer = EigenvaluesLayer.create()
    assert (layer.ndim, layer.rank) == (2, 2)
    assert layer.describe() == {"type": "eigenvalues", "ndim": 2, "padding_spec": [[0, 0], [0, 0]]}
    labels = resolve_stack([layer], (3, 3), 3).feature_labels()
    assert labels == (
        "eigenvalues(channel 0, …, channel 2) [0]",
        "eigenvalues(channel 0, …, channel 2) [1]",
    )
    with pytest.raises(InputError, match=r"^ndim must be an integer >= 2 and <= 3, got 4$"):
        EigenvaluesLayer.create(4)
    with pytest.raises(
        InputError,
        match=r"^layers\[0\].eigenvalues: the eigenvalues of 3-D tensors take groups of 6 "
        r"components \[zz, zy, zx, yy, yx, xx\], but the input has 4 features$",
    ):
        apply_stack([EigenvaluesLayer.create(3)], np.zeros((4, 2, 2, 2), np.float32))
    conv2d = ConvLayer.create(np.ones((3, 1, 3, 3), np.float32))
    with pytest.raises(InputError, match=r"layers\[0\].conv is a 2-D layer but layers\[1\]"):
        apply_stack([conv2d, EigenvaluesLayer.create(3)], np.zeros((1, 5, 5), np.float32))
