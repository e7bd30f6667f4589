"""The ``features`` layer (``featuremap.engine.layers.features``) against a float64 reference
built here: derivatives by ``scipy.ndimage.correlate1d`` (``mirror``), the structure tensor's
products mirrored as a *field* (``numpy.pad(mode="reflect")`` of the products, then the
smoothing), ``eigvalsh``; in 2-D and anisotropic 3-D, several input channels, on 1-3 threads;
a Dask array in odd chunks (blocks far smaller than the halo) equal to the whole array; the halo
(the widest feature, not a sum of stages), its description and refusals; tiles and mirrors."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi

from featuremap.arrays.dask import blockwise_stack
from featuremap.banks.fastfilters import fastfilters_kernel_1d
from featuremap.engine.kernels import _threads
from featuremap.engine.layers import features
from featuremap.engine.layers.features import Derivative, FeaturesLayer, TensorOp
from featuremap.engine.layers.pointwise import PointwiseOp
from featuremap.engine.stack import apply_stack
from featuremap.errors import InputError


def derivative(sigmas: tuple[float, ...], order: tuple[int, ...]) -> Derivative:
    kernels = tuple(fastfilters_kernel_1d(s, o) for s, o in zip(sigmas, order, strict=True))
    return Derivative(kernels, {"sigma": list(sigmas), "order": list(order)})


def smoothing(*sigmas: float) -> tuple[np.ndarray, ...]:
    return tuple(fastfilters_kernel_1d(s, 0) for s in sigmas)


def response(image: np.ndarray, d: Derivative) -> np.ndarray:
    """One derivative of one float64 image, mirrored at the border."""
    out = image.astype(np.float64)
    for axis, kernel in enumerate(d.kernels):
        out = ndi.correlate1d(out, kernel, axis=axis, mode="mirror")
    return out


def tensor_eigenvalues(gradient: list[np.ndarray], kernels: tuple[np.ndarray, ...]) -> np.ndarray:
    """Eigenvalues, descending, of the smoothed structure tensor; the products mirrored at the
    border (``numpy.pad`` by each axis's radius, then valid smoothing)."""
    ndim = len(gradient)
    radius = [len(k) // 2 for k in kernels]
    tensor = np.empty((*gradient[0].shape, ndim, ndim))
    for a in range(ndim):
        for b in range(a, ndim):
            field = np.pad(gradient[a] * gradient[b], [(r, r) for r in radius], mode="reflect")
            for axis, kernel in enumerate(kernels):
                field = ndi.correlate1d(field, kernel, axis=axis, mode="constant")
            inside = tuple(slice(r, n - r) for r, n in zip(radius, field.shape, strict=True))
            tensor[..., a, b] = tensor[..., b, a] = field[inside]
    return np.moveaxis(np.linalg.eigvalsh(tensor)[..., ::-1], -1, 0)


def reference(layer: FeaturesLayer, x: np.ndarray) -> np.ndarray:
    """The layer's outputs for ``x (C, *spatial)``, in float64."""
    responses = [response(channel, d) for channel in x for d in layer.derivatives]
    parts: list[np.ndarray] = []
    for op in layer.ops:
        values = [responses[i] for i in op.inputs]
        if isinstance(op, TensorOp):
            parts.extend(tensor_eigenvalues(values, op.smoothing))
        elif op.kind == "magnitude":
            parts.append(np.sqrt(sum(v * v for v in values)))
        elif op.kind == "sum":
            parts.append(sum(values))
        elif op.kind == "difference":
            parts.append(values[0] - values[1])
        else:
            assert op.kind == "copy"
            parts.append(values[0])
    return np.stack(parts)


def layer_2d(in_channels: int = 1) -> FeaturesLayer:
    """A Gaussian (radius 12), a gradient magnitude sharing the σ 2 tensor's gradient, a LoG
    (radius 8) and two structure tensors (gradients radius 7 and 3, smoothing 3 and 2)."""
    derivatives = (
        derivative((2.0, 2.0), (1, 0)),
        derivative((2.0, 2.0), (0, 1)),
        derivative((4.0, 4.0), (0, 0)),
        derivative((2.0, 2.0), (2, 0)),
        derivative((2.0, 2.0), (0, 2)),
        derivative((0.7, 0.7), (1, 0)),
        derivative((0.7, 0.7), (0, 1)),
    )
    ops: list[PointwiseOp | TensorOp] = []
    for channel in range(in_channels):
        base = channel * len(derivatives)
        ops += [
            PointwiseOp("copy", (base + 2,)),
            TensorOp((base, base + 1), smoothing(1.0, 1.0), {"name": "st", "sigma": 2.0}),
            PointwiseOp("magnitude", (base, base + 1)),
            PointwiseOp("sum", (base + 3, base + 4)),
            TensorOp((base + 5, base + 6), smoothing(0.5, 0.6), {"name": "st", "sigma": 0.7}),
        ]
    return FeaturesLayer(derivatives, tuple(ops), in_channels)


def check_close(result: np.ndarray, expected: np.ndarray) -> None:
    """Each channel within 1e-5 of its largest absolute value."""
    axes = tuple(range(1, expected.ndim))
    error = np.abs(result - expected).max(axis=axes)
    assert (error <= 1e-5 * np.abs(expected).max(axis=axes)).all(), error


def test_the_halo_is_the_widest_feature():
    layer = layer_2d()
    # the Gaussian reads 12; the σ 2 tensor 7 + 3 = 10: the halo is 12, not 12 + 3
    assert layer.halo == (12, 12)
    tensors_only = FeaturesLayer(layer.derivatives, (layer.ops[1],))
    assert tensors_only.halo == (10, 10)
    # σ 10, ilastik's widest: the structure tensor reads 35 + 15 = 50, the Hessian 40
    sigma = (10.0, 10.0)
    wide = FeaturesLayer(
        (derivative(sigma, (1, 0)), derivative(sigma, (0, 1)), derivative(sigma, (2, 0))),
        (TensorOp((0, 1), smoothing(5.0, 5.0)), PointwiseOp("copy", (2,))),
    )
    assert wide.halo == (50, 50)
    assert wide.geometry((400, 400)).kernel_size == (101, 101)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_2d_equals_the_reference(monkeypatch, threads):
    monkeypatch.setattr(_threads, "blas_threads", lambda: threads)
    monkeypatch.setattr(features, "blas_threads", lambda: threads)
    x = np.random.default_rng(0).standard_normal((2, 61, 57)).astype(np.float32)
    layer = layer_2d(in_channels=2)
    assert layer.out_channels(2) == 2 * (1 + 2 + 1 + 1 + 2)
    result = apply_stack([layer], x)
    assert result.shape == (14, 61, 57)
    assert result.dtype == np.float32
    check_close(result, reference(layer, x))


def test_3d_anisotropic():
    x = np.random.default_rng(1).standard_normal((1, 14, 23, 19)).astype(np.float32)
    sigma = (0.6, 1.5, 1.5)
    axes = [tuple(int(a == b) for b in range(3)) for a in range(3)]
    layer = FeaturesLayer(
        (*(derivative(sigma, o) for o in axes), derivative(sigma, (0, 0, 0))),
        (TensorOp((0, 1, 2), smoothing(0.3, 0.75, 0.75)), PointwiseOp("copy", (3,))),
    )
    assert layer.ndim == 3
    assert layer.halo == (4, 9, 9)  # gradients 3, 6, 6 (ceil 3.5σ), smoothing 1, 3, 3 (ceil 3σ)
    check_close(apply_stack([layer], x), reference(layer, x))


@pytest.mark.parametrize("ndim", [2, 3])
def test_chunks_equal_the_whole_array(ndim):
    """Every block mirrors the tensor field at the true border only, never at a chunk's, with
    blocks smaller than the halo."""
    sigma = (1.2,) * ndim
    axes = [tuple(int(a == b) for b in range(ndim)) for a in range(ndim)]
    layer = FeaturesLayer(
        (*(derivative(sigma, o) for o in axes), derivative(sigma, (2,) + (0,) * (ndim - 1))),
        (
            PointwiseOp("magnitude", tuple(range(ndim))),
            TensorOp(tuple(range(ndim)), smoothing(*[0.6] * ndim)),
            PointwiseOp("copy", (ndim,)),
        ),
    )
    spatial = (23, 21) if ndim == 2 else (11, 13, 12)
    x = np.random.default_rng(2).standard_normal((2, 1, *spatial)).astype(np.float32)
    chunks = (1, 1, *[(3, 5, n - 8) for n in spatial])
    expected = apply_stack([layer], x)
    got = blockwise_stack(da.from_array(x, chunks=chunks), [layer]).compute(scheduler="sync")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))
    check_close(expected[0], reference(layer, x[0, 0][None]))


def test_description_and_refusals():
    layer = layer_2d()
    described = json.loads(json.dumps(layer.to_dict()))
    assert described["type"] == "features"
    assert described["kernel_size"] == [25, 25]
    assert described["padding_mode"] == "reflect"
    assert described["ops"][1] == ["structure_tensor", [0, 1], [7, 7]]
    assert described["derivatives"][2] == {"sigma": [4.0, 4.0], "order": [0, 0]}
    assert described["taps"][2] == [25, 25]
    labels = layer.describe_features([], None)
    assert [d.get("component") for d in labels] == [None, 0, 1, None, None, 0, 1]
    with pytest.raises(InputError, match="reflect padding 12 along y"):
        layer.geometry((12, 40))
    with pytest.raises(InputError, match="built for 1 input channel"):
        layer.out_channels(2)
    with pytest.raises(InputError, match="read response 7 but it computes 7"):
        FeaturesLayer(layer.derivatives, (PointwiseOp("copy", (7,)),))
    with pytest.raises(InputError, match="one gradient channel and one smoothing kernel"):
        TensorOp((0, 1), smoothing(1.0))
    with pytest.raises(InputError, match="odd length"):
        TensorOp((0, 1), (np.ones(2), np.ones(3)))
    with pytest.raises(InputError, match="one spatial rank"):
        FeaturesLayer(
            (derivative((1.0, 1.0), (0, 0)), derivative((1.0,) * 3, (0, 0, 0))),
            (PointwiseOp("copy", (0,)),),
        )


@pytest.mark.parametrize("shape", [(7, 9), (3, 8, 5)])
def test_mirror_reflects_each_axis(shape):
    inside = np.random.default_rng(3).standard_normal((2, *shape))
    low, high = [2, 3, 1][: len(shape)], [1, 0, 4][: len(shape)]
    values = np.zeros((2, *(n + lo + hi for n, lo, hi in zip(shape, low, high, strict=True))))
    values[(slice(None), *(slice(lo, lo + n) for lo, n in zip(low, shape, strict=True)))] = inside
    features._mirror(values, low, high)
    expected = np.pad(inside, [(0, 0), *zip(low, high, strict=True)], mode="reflect")
    np.testing.assert_array_equal(values, expected)


@pytest.mark.parametrize("threads", [1, 2, 5])
@pytest.mark.parametrize(
    ("size", "halo"), [((2048, 2048), (15, 15)), ((7, 300), (3, 3)), ((64, 512, 512), (3, 3, 3))]
)
def test_tiles_cover_the_output_once(monkeypatch, threads, size, halo):
    monkeypatch.setattr(features, "blas_threads", lambda: threads)
    tiles = features._tiles(size, halo, parallel=True)
    covered = np.zeros(size, np.int8)
    for tile in tiles:
        covered[tile] += 1
    assert (covered == 1).all()
    assert len(tiles) >= min(threads, int(np.prod(size[:-1])))
    assert features._tiles(size, halo, parallel=False) == [tuple(slice(0, n) for n in size)]
