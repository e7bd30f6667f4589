"""Chunk-exact fused execution (``featuremap.arrays.dask``) against whole-image oracles.

Every chunked result must equal the in-memory engine (:func:`featuremap.engine.stack.apply_stack`) and
a float64 PyTorch computation of the same stack on the whole image, whatever the chunking: halos
larger than a chunk, ragged chunks, strides that do not divide the chunks, every border mode at
the first layer and at later layers (where it applies to the intermediate map's true border),
pools and reductions inside stacks, batch axes. The graph is inspected too: a block's task
depends on exactly the input chunks its window overlaps. The interval planning underneath
(``featuremap.engine.blockplan``) has its own tests, ``test_blockplan.py``.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import dask.core
import numpy as np
import pytest
from dask._task_spec import Task
from support.torch_reference import TORCH_ACTIVATIONS

from featuremap.arrays.dask import blockwise_stack
from featuremap.engine.geometry import input_window
from featuremap.engine.layers import ConvLayer, PoolLayer, ReduceLayer
from featuremap.engine.stack import apply_stack, resolve_stack
from featuremap.errors import InputError

torch = pytest.importorskip("torch")
F = torch.nn.functional

MODES = ("zeros", "reflect", "replicate", "circular")
TORCH_MODES = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "replicate",
    "circular": "circular",
}


# --- oracles -----------------------------------------------------------------------------------


def _resolved(x, layers):
    """The stack resolved against the Dask array ``x``, as a job plan holds it."""
    return resolve_stack(layers, x.shape[-2:], x.shape[-3])


def torch_layer(layer, x: torch.Tensor) -> torch.Tensor:
    """One layer in float64 torch on a whole ``(N, C, H, W)`` image, padding at its border."""
    if layer.kind == "reduce":
        reduce = {
            "max": lambda t: t.amax(1, keepdim=True),
            "mean": lambda t: t.mean(1, keepdim=True),
            "sum": lambda t: t.sum(1, keepdim=True),
            "max_abs": lambda t: t.abs().amax(1, keepdim=True),
        }[layer.ops[0]]
        sizes = (
            layer.groups * (x.shape[1] // layer.groups[0])
            if len(layer.groups) == 1
            else layer.groups
        )
        return torch.cat([reduce(part) for part in torch.split(x, list(sizes), dim=1)], dim=1)
    (top, bottom), (left, right) = layer.geometry(tuple(x.shape[-2:])).padding
    widths = (left, right, top, bottom)
    if layer.kind == "pool":
        fill = float("-inf") if layer.op == "max" else 0.0
        padded = F.pad(x, widths, value=fill)
        pool = F.max_pool2d if layer.op == "max" else F.avg_pool2d
        return pool(padded, layer.kernel_size, layer.stride)
    padded = F.pad(x, widths, mode=TORCH_MODES[layer.padding_mode])
    bias = None if layer.bias is None else torch.from_numpy(layer.bias).double()
    out = F.conv2d(
        padded,
        torch.from_numpy(layer.weight).double(),
        bias,
        stride=layer.stride,
        dilation=layer.dilation,
        groups=layer.groups,
    )
    return TORCH_ACTIVATIONS[layer.activation](out)


def torch_stack(layers, image: np.ndarray) -> np.ndarray:
    batch = image.shape[:-3]
    x = torch.from_numpy(np.asarray(image, dtype=np.float64).reshape(-1, *image.shape[-3:]))
    for layer in layers:
        x = torch_layer(layer, x)
    return x.numpy().reshape(*batch, *x.shape[1:])


def assert_matches_oracles(x: da.Array, layers, image: np.ndarray, **kwargs) -> np.ndarray:
    """Compute the blockwise result and compare it with ``apply_stack`` and torch float64."""
    lazy = blockwise_stack(x, layers, **kwargs)
    got = lazy.compute(scheduler="sync")
    assert got.dtype == np.float32
    assert got.shape == lazy.shape
    assert all(len(c) == 1 for c in lazy.chunks[-3:-2]), "features must be one chunk"
    assert lazy.chunks[:-3] == x.chunks[:-3], "batch axes keep the input's chunks"
    expected = torch_stack(layers, image)
    assert got.shape == expected.shape
    scale = max(np.nanmax(np.abs(expected), initial=0.0), 1.0)
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5 * scale, equal_nan=True)
    in_memory = apply_stack(layers, image)
    np.testing.assert_allclose(got, in_memory, rtol=1e-4, atol=1e-5 * scale, equal_nan=True)
    return got


def conv(rng, out_channels, in_channels, kernel, *, groups=1, **options) -> ConvLayer:
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    weight = rng.standard_normal((out_channels, in_channels // groups, *kernel)) / np.prod(kernel)
    return ConvLayer.create(weight, rng.standard_normal(out_channels), groups=groups, **options)


# --- targeted cases ----------------------------------------------------------------------------


def test_halo_larger_than_chunk():
    rng = np.random.default_rng(1)
    image = rng.standard_normal((2, 23, 26)).astype(np.float32)
    layers = [conv(rng, 3, 2, 9, padding=4)]
    assert_matches_oracles(da.from_array(image, chunks=(2, 3, 3)), layers, image, out_chunks=(3, 4))


def test_ragged_chunks_and_stride_not_dividing_chunks():
    rng = np.random.default_rng(2)
    image = rng.standard_normal((3, 34, 31)).astype(np.float32)
    x = da.from_array(image, chunks=((1, 2), (5, 7, 3, 9, 10), (4, 11, 2, 14)))
    layers = [conv(rng, 4, 3, (5, 4), stride=3, padding=[[2, 1], [0, 3]])]
    got = assert_matches_oracles(x, layers, image)
    assert blockwise_stack(x, layers).chunks[-2:] == ((1,) * got.shape[-2], (1,) * got.shape[-1])
    assert_matches_oracles(da.from_array(image, chunks=(3, 7, 7)), layers, image)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_even_kernel_same_padding(stride):
    rng = np.random.default_rng(3 + stride)
    image = rng.standard_normal((1, 29, 30)).astype(np.float32)
    layers = [conv(rng, 2, 1, (4, 6), stride=stride, padding="same", activation="tanh")]
    got = assert_matches_oracles(da.from_array(image, chunks=(1, 8, 5)), layers, image)
    assert got.shape[-2:] == (-(-29 // stride), -(-30 // stride))


def test_dilation_and_groups():
    rng = np.random.default_rng(4)
    image = rng.standard_normal((4, 27, 25)).astype(np.float32)
    layers = [
        conv(rng, 6, 4, 3, groups=2, dilation=(3, 2), padding=(3, 2), activation="relu"),
        conv(rng, 3, 6, 3, groups=3, dilation=2, padding="same"),
    ]
    assert_matches_oracles(da.from_array(image, chunks=(4, 6, 4)), layers, image, out_chunks=(5, 2))


def test_blocks_entirely_in_padding():
    """Outputs that read only constant padding (padding wider than the kernel) still work."""
    rng = np.random.default_rng(16)
    image = rng.standard_normal((1, 9, 8)).astype(np.float32)
    layers = [conv(rng, 2, 1, 3, padding=[[6, 5], [4, 7]]), conv(rng, 1, 2, 2, padding=3)]
    assert_matches_oracles(da.from_array(image, chunks=(1, 3, 3)), layers, image, out_chunks=(1, 2))


@pytest.mark.parametrize("mode", MODES)
def test_border_mode_single_layer(mode):
    rng = np.random.default_rng(5)
    image = rng.standard_normal((2, 19, 22)).astype(np.float32)
    # padding up to the limits: reflect < n, circular <= n (n = 19 here)
    padding = [[7, 8], [9, 5]] if mode != "circular" else [[18, 19], [11, 22]]
    layers = [conv(rng, 3, 2, (9, 11), padding=padding, padding_mode=mode)]
    assert_matches_oracles(da.from_array(image, chunks=(2, 4, 6)), layers, image, out_chunks=(4, 3))


@pytest.mark.parametrize("mode", MODES)
def test_border_mode_inside_stack(mode):
    """A later layer pads the intermediate map at *its* true border, not at chunk borders."""
    rng = np.random.default_rng(6)
    image = rng.standard_normal((2, 40, 37)).astype(np.float32)
    layers = [
        conv(rng, 3, 2, 5, stride=2, padding=1, padding_mode="zeros", activation="abs"),
        PoolLayer.create("max", 3, 1, 1),
        conv(rng, 4, 3, (3, 5), padding=[[2, 1], [4, 3]], padding_mode=mode, dilation=(1, 2)),
        PoolLayer.create("avg", 2, 2, 1),
        conv(rng, 2, 4, 3, padding="same", padding_mode=mode),
    ]
    for chunks in [(2, 5, 7), (2, (9, 3, 20, 8), (30, 7))]:
        assert_matches_oracles(
            da.from_array(image, chunks=chunks), layers, image, out_chunks=(2, 3)
        )


def test_pool_stack_and_reduce():
    rng = np.random.default_rng(7)
    image = rng.standard_normal((1, 33, 35)).astype(np.float32)
    layers = [
        conv(rng, 6, 1, 7, padding="same", padding_mode="reflect", activation="square"),
        ReduceLayer.create("max", 3),
        PoolLayer.create("max", (3, 2), (2, 3), (1, 1)),
        ReduceLayer.create("mean", [1, 1]),
        PoolLayer.create("avg", 3, 2, 1),
    ]
    assert_matches_oracles(da.from_array(image, chunks=(1, 4, 9)), layers, image)


@pytest.mark.parametrize(
    ("batch_shape", "batch_chunks"),
    [((), ()), ((3,), (2,)), ((2, 3), (1, 2))],
)
def test_batch_axes_carried_and_parallelised(batch_shape, batch_chunks):
    rng = np.random.default_rng(8)
    image = rng.standard_normal((*batch_shape, 2, 18, 21)).astype(np.float32)
    x = da.from_array(image, chunks=(*batch_chunks, 1, 7, 8))  # channels chunked: rechunked inside
    layers = [conv(rng, 3, 2, 3, padding=1, padding_mode="circular"), PoolLayer.create("max", 2)]
    got = assert_matches_oracles(x, layers, image)
    lazy = blockwise_stack(x, layers)
    assert got.shape[:-3] == batch_shape
    assert lazy.numblocks[:-3] == x.numblocks[:-3]


def test_integer_input_and_nan_propagation():
    rng = np.random.default_rng(9)
    image = rng.integers(0, 255, (2, 21, 17)).astype(np.uint8)
    layers = [conv(rng, 2, 2, 3, padding=1, padding_mode="replicate"), PoolLayer.create("max", 2)]
    assert_matches_oracles(da.from_array(image, chunks=(2, 5, 4)), layers, image)

    with_nan = rng.standard_normal((2, 21, 17))
    with_nan[0, 3, 4] = np.nan
    with_nan[1, 20, 0] = np.nan  # at the corner: replicate padding spreads it along the border
    got = assert_matches_oracles(da.from_array(with_nan, chunks=(2, 5, 4)), layers, with_nan)
    assert np.isnan(got).any()
    assert not np.isnan(got).all()


@pytest.mark.parametrize("seed", range(6))
def test_random_stacks_and_chunkings(seed):
    rng = np.random.default_rng(1000 + seed)
    shape = (int(rng.integers(2, 4)), int(rng.integers(20, 45)), int(rng.integers(20, 45)))
    image = rng.standard_normal(shape).astype(np.float32)
    layers = random_stack(rng, shape)
    chunks = (shape[0], random_chunks(rng, shape[1]), random_chunks(rng, shape[2]))
    out_chunks = None if rng.random() < 0.3 else tuple(int(c) for c in rng.integers(1, 7, 2))
    assert_matches_oracles(
        da.from_array(image, chunks=chunks), layers, image, out_chunks=out_chunks
    )


def random_chunks(rng, n: int) -> tuple[int, ...]:
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(min(rng.integers(2, 13), n - sum(sizes))))
    return tuple(sizes)


def random_stack(rng, shape) -> list:
    """2-4 random layers that fit the image (rejection sampling against the layer checks)."""
    while True:
        layers, channels, hw = [], shape[0], shape[1:]
        try:
            for _ in range(int(rng.integers(2, 5))):
                layer = random_layer(rng, channels)
                geometry = layer.geometry(hw)
                channels = layer.out_channels(channels)
                hw = geometry.output_shape(hw)
                layers.append(layer)
            return layers
        except InputError:
            continue


def random_layer(rng, channels: int):
    kind = rng.choice(["conv", "conv", "pool", "reduce"])
    if kind == "pool":
        kernel = int(rng.integers(1, 4))
        return PoolLayer.create(
            str(rng.choice(["max", "avg"])),
            kernel,
            int(rng.integers(1, 3)),
            int(rng.integers(0, kernel // 2 + 1)),
        )
    if kind == "reduce":
        return ReduceLayer.create(str(rng.choice(["max", "mean", "sum"])), [channels])
    groups = int(rng.choice([g for g in (1, 2, 3) if channels % g == 0]))
    kernel = (int(rng.integers(1, 8)), int(rng.integers(1, 8)))
    padding = rng.choice(["same", "int", "pairs"])
    padding = {
        "same": "same",
        "int": int(rng.integers(0, 5)),
        "pairs": [[int(p) for p in rng.integers(0, 6, 2)] for _ in range(2)],
    }[padding]
    return conv(
        rng,
        groups * int(rng.integers(1, 3)),
        channels,
        kernel,
        groups=groups,
        stride=[int(s) for s in rng.integers(1, 4, 2)],
        dilation=[int(d) for d in rng.integers(1, 3, 2)],
        padding=padding,
        padding_mode=str(rng.choice(MODES)),
        activation=str(rng.choice(["none", "relu", "abs"])),
    )


# --- graph structure ---------------------------------------------------------------------------


def input_dependencies(lazy: da.Array, x: da.Array) -> dict[tuple, set[tuple]]:
    """For every output block key, the input chunk keys it reads: directly (its home chunk) or
    through the halo-cutting task of a neighbouring chunk."""
    graph = dict(lazy.__dask_graph__())

    def inputs(key: Any) -> set[tuple]:
        if isinstance(key, tuple) and key[0] == x.name:
            return {key}
        task = graph[key]
        if not (isinstance(key, tuple) and key[0].endswith("-halo")) and key not in block_keys:
            return set()
        return set().union(*(inputs(d) for d in task.dependencies))

    block_keys = set(dask.core.flatten(lazy.__dask_keys__()))
    deps = {}
    for key in block_keys:
        assert isinstance(graph[key], Task)
        deps[key] = inputs(key)
    return deps


def chunk_range(bounds: np.ndarray, start: int, stop: int) -> set[int]:
    """Chunks (by cumulative ``bounds``) overlapping ``[start, stop)``."""
    return {i for i in range(len(bounds) - 1) if bounds[i] < stop and bounds[i + 1] > start}


def test_block_depends_only_on_chunks_under_its_window():
    rng = np.random.default_rng(10)
    image = rng.standard_normal((1, 60, 50)).astype(np.float32)
    x = da.from_array(image, chunks=(1, (4, 9, 3, 20, 24), (10, 5, 5, 30)))
    layers = [
        conv(rng, 2, 1, 9, padding=4),
        PoolLayer.create("max", 2),
        conv(rng, 2, 2, 5, dilation=2),
    ]
    lazy = blockwise_stack(x, layers, out_chunks=(3, 4))
    geometries = [
        layer.geometry(hw)
        for layer, hw in zip(layers, [(60, 50), (60, 50), (30, 25)], strict=False)
    ]
    bounds = [np.cumsum((0, *c)) for c in x.chunks[-2:]]
    out_bounds = [np.cumsum((0, *c)) for c in lazy.chunks[-2:]]
    deps = input_dependencies(lazy, x)
    assert len(deps) == lazy.npartitions
    for (_, _, iy, ix), chunks in deps.items():
        expected = []
        for axis, index in enumerate((iy, ix)):
            start, stop = input_window(
                [g.axes[axis] for g in geometries],
                int(out_bounds[axis][index]),
                int(out_bounds[axis][index + 1]),
            )
            expected.append(chunk_range(bounds[axis], start, stop))
        assert {(c[-2], c[-1]) for c in chunks} == {
            (a, b) for a in expected[0] for b in expected[1]
        }


def test_circular_border_block_skips_middle_chunks():
    rng = np.random.default_rng(11)
    image = rng.standard_normal((1, 12, 100)).astype(np.float32)
    x = da.from_array(image, chunks=(1, 12, 20))
    layers = [
        conv(rng, 1, 1, (3, 7), padding=(1, 3), padding_mode="circular"),
        PoolLayer.create("avg", 1),
    ]
    lazy = blockwise_stack(x, layers, out_chunks=(12, 20))
    deps = input_dependencies(lazy, x)
    x_chunks = {key[-1]: {c[-1] for c in chunks} for key, chunks in deps.items()}
    assert x_chunks == {0: {0, 1, 4}, 1: {0, 1, 2}, 2: {1, 2, 3}, 3: {2, 3, 4}, 4: {0, 3, 4}}
    # one task per output block, the layers node, the input chunks and at most one
    # halo-cutting task per input chunk: no per-halo slicing tasks
    graph = dict(lazy.__dask_graph__())
    halo_tasks = [key for key in graph if isinstance(key, tuple) and key[0].endswith("-halo")]
    assert 0 < len(halo_tasks) <= x.npartitions
    assert len(graph) == lazy.npartitions + 1 + x.npartitions + len(halo_tasks)
    assert_matches_oracles(x, layers, image, out_chunks=(12, 20))


def test_distributed_cluster_matches_in_memory(client):
    rng = np.random.default_rng(14)
    image = rng.standard_normal((3, 2, 30, 28)).astype(np.float32)
    x = da.from_array(image, chunks=(2, 2, 7, 9))
    layers = [
        conv(rng, 4, 2, 5, padding=2, padding_mode="circular", activation="relu"),
        PoolLayer.create("max", 3, 2, 1),
        conv(rng, 2, 4, 3, padding="same", padding_mode="reflect"),
    ]
    expected = apply_stack(layers, image)
    got = client.compute(blockwise_stack(x, layers, out_chunks=(4, 4))).result()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_cupy_chunks_give_cupy_blocks_equal_to_numpy():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(17)
    image = rng.standard_normal((2, 2, 40, 36)).astype(np.float32)
    layers = [
        conv(rng, 4, 2, 5, padding="same", padding_mode="reflect", activation="relu"),
        PoolLayer.create("max", 2),
        conv(rng, 3, 4, 3, padding=1, padding_mode="circular"),
    ]
    x = da.from_array(image, chunks=(1, 2, 9, 11))
    on_gpu = blockwise_stack(x.map_blocks(cupy.asarray), layers, out_chunks=(5, 4))
    assert isinstance(on_gpu._meta, cupy.ndarray)
    got = on_gpu.compute(scheduler="sync")
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(got), torch_stack(layers, image), rtol=2e-4, atol=2e-4)


# --- input errors ------------------------------------------------------------------------------


def test_input_errors():
    rng = np.random.default_rng(15)
    layer = conv(rng, 2, 3, 3)
    with pytest.raises(InputError, match="Dask array"):
        blockwise_stack(np.zeros((3, 8, 8)), [layer])
    with pytest.raises(InputError, match="channels, y, x"):
        blockwise_stack(da.zeros((8, 8)), [layer])
    with pytest.raises(InputError, match=r"layers\[0\]\.conv: .*3 input channels"):
        blockwise_stack(da.zeros((2, 8, 8)), [layer])
    with pytest.raises(InputError, match="out_chunks"):
        blockwise_stack(da.zeros((3, 8, 8)), [layer], out_chunks=(0, 2))
    with pytest.raises(InputError, match="empty"):
        blockwise_stack(da.zeros((3, 8, 8)), [])
    with pytest.raises(InputError, match="every size >= 1"):  # no features: refused before any plan
        ConvLayer.create(np.zeros((0, 3, 3, 3)))
    with pytest.raises(InputError, match=r"reflect padding 8 along y must be smaller"):
        blockwise_stack(
            da.zeros((3, 8, 8)),
            [ConvLayer.create(np.ones((1, 3, 3, 3)), padding=8, padding_mode="reflect")],
        )
