"""The ``structure_tensor`` layer (``featuremap.engine.layers.structure_tensor``): against a float64
reference that mirrors the *tensor field* at the border (products of the gradient channels,
``numpy.pad(mode="reflect")``, separable smoothing, ``eigvalsh``) in 2-D and anisotropic 3-D,
with pointwise ops in between in output order; tiles on several threads; a Dask array in odd
chunks equal to the whole array; its geometry, description and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage as ndi
from support.pointwise import chunked_equals_in_memory, conv, image

from featuremap.banks.fastfilters import fastfilters_kernel_1d
from featuremap.engine.kernels import _threads
from featuremap.engine.layers import structure_tensor
from featuremap.engine.layers._base import Window
from featuremap.engine.layers.pointwise import PointwiseOp
from featuremap.engine.layers.structure_tensor import StructureTensorLayer, TensorOp
from featuremap.engine.stack import apply_stack
from featuremap.errors import InputError


def smoothing(*sigmas: float) -> tuple[np.ndarray, ...]:
    return tuple(fastfilters_kernel_1d(s, 0) for s in sigmas)


def reference(gradient: np.ndarray, kernels: tuple[np.ndarray, ...]) -> np.ndarray:
    """Eigenvalues, descending, of the smoothed structure tensor of ``gradient (ndim, *spatial)``,
    the products mirrored at the border (each axis by its own radius), all in float64."""
    ndim = len(gradient)
    g = gradient.astype(np.float64)
    pairs = [(a, b) for a in range(ndim) for b in range(a, ndim)]
    tensor = np.empty((*g.shape[1:], ndim, ndim))
    for a, b in pairs:
        field = g[a] * g[b]
        for axis, kernel in enumerate(kernels):
            field = ndi.correlate1d(field, kernel, axis=axis, mode="mirror")
        tensor[..., a, b] = tensor[..., b, a] = field
    return np.moveaxis(np.linalg.eigvalsh(tensor)[..., ::-1], -1, 0)


def layer_2d() -> StructureTensorLayer:
    return StructureTensorLayer(
        (
            PointwiseOp("copy", (2,)),
            TensorOp((0, 1), smoothing(1.5, 1.5), {"name": "st", "sigma": 3.0}),
            PointwiseOp("magnitude", (0, 1)),
            TensorOp((1, 2), smoothing(0.5, 0.8), {"name": "st", "sigma": 1.0}),
        )
    )


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_2d_equals_the_mirrored_tensor_field(monkeypatch, threads):
    monkeypatch.setattr(_threads, "blas_threads", lambda: threads)
    monkeypatch.setattr(structure_tensor, "blas_threads", lambda: threads)
    x = np.random.default_rng(0).standard_normal((2, 3, 61, 57)).astype(np.float32)
    layer = layer_2d()
    assert layer.halo == (5, 5)
    assert layer.out_channels(3) == 1 + 2 + 1 + 2
    padded = np.pad(x, ((0, 0), (0, 0), (5, 5), (5, 5)), mode="reflect")
    result = layer.apply_padded(padded, Window((0, 0), (61, 57)))
    assert result.shape == (2, 6, 61, 57)
    assert result.dtype == np.float32
    for n in range(2):
        np.testing.assert_array_equal(result[n, 0], x[n, 2])
        np.testing.assert_allclose(result[n, 3], np.hypot(x[n, 0], x[n, 1]), rtol=1e-6)
        for channels, tensor_op in (((1, 2), layer.ops[1]), ((4, 5), layer.ops[3])):
            assert isinstance(tensor_op, TensorOp)
            expected = reference(x[n, list(tensor_op.inputs)], tensor_op.smoothing)
            error = np.abs(result[n, list(channels)] - expected).max(axis=(1, 2))
            assert (error <= 1e-5 * np.abs(expected).max(axis=(1, 2))).all(), error


def test_3d_with_per_axis_smoothing():
    x = np.random.default_rng(1).standard_normal((3, 14, 23, 19)).astype(np.float32)
    op = TensorOp((0, 1, 2), smoothing(0.4, 1.0, 1.0))
    layer = StructureTensorLayer((op, PointwiseOp("sum", (0, 1, 2))))
    assert layer.ndim == 3
    assert layer.halo == (2, 3, 3)
    geometry = layer.geometry((14, 23, 19))
    assert geometry.kernel_size == (5, 7, 7)
    assert geometry.padding == ((2, 2), (3, 3), (3, 3))
    result = apply_stack([layer], x)
    expected = reference(x, op.smoothing)
    error = np.abs(result[:3] - expected).max(axis=(1, 2, 3))
    assert (error <= 1e-5 * np.abs(expected).max(axis=(1, 2, 3))).all(), error
    np.testing.assert_allclose(result[3], x.sum(axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
def test_chunks_equal_the_whole_array(ndim):
    """Every block mirrors the tensor field at the true border only, never at a chunk's."""
    ops = (
        PointwiseOp("magnitude", tuple(range(ndim))),
        TensorOp(tuple(range(ndim)), smoothing(*[0.7] * ndim)),
    )
    chunked_equals_in_memory([conv(ndim, 1, ndim), StructureTensorLayer(ops)], image(ndim))


def test_description_and_refusals():
    layer = layer_2d()
    described = json.loads(json.dumps(layer.to_dict()))
    assert described["type"] == "structure_tensor"
    assert described["kernel_size"] == [11, 11]
    assert described["padding_mode"] == "reflect"
    assert described["ops"][1] == ["structure_tensor", [0, 1], [11, 11]]
    labels = layer.describe_features([], None)
    assert [d.get("component") for d in labels] == [None, 0, 1, None, 0, 1]
    with pytest.raises(InputError, match="reflect padding 5 along y"):
        layer.geometry((5, 40))
    with pytest.raises(InputError, match="reads input channel 2"):
        layer.out_channels(2)
    with pytest.raises(InputError, match="one gradient channel and one smoothing kernel"):
        TensorOp((0, 1), smoothing(1.0))
    with pytest.raises(InputError, match="odd length"):
        TensorOp((0, 1), (np.ones(2), np.ones(3)))
    with pytest.raises(InputError, match="one spatial rank"):
        StructureTensorLayer((PointwiseOp("copy", (0,)),))


@pytest.mark.parametrize("threads", [1, 2, 5])
@pytest.mark.parametrize(
    ("size", "halo"), [((2048, 2048), (15, 15)), ((7, 300), (3, 3)), ((64, 512, 512), (3, 3, 3))]
)
def test_tiles_cover_the_output_once(monkeypatch, threads, size, halo):
    monkeypatch.setattr(structure_tensor, "blas_threads", lambda: threads)
    tiles = structure_tensor._tiles(size, halo, parallel=True)
    covered = np.zeros(size, np.int8)
    for tile in tiles:
        covered[tile] += 1
    assert (covered == 1).all()
    assert len(tiles) >= min(threads, int(np.prod(size[:-1])))
    assert structure_tensor._tiles(size, halo, parallel=False) == [tuple(slice(0, n) for n in size)]
