"""Pool layers (``featuremap.engine.layers.pool``): what torch refuses is refused."""

from __future__ import annotations

import numpy as np
import pytest

import featuremap
from featuremap.errors import InputError


@pytest.mark.parametrize("pool", ["max_pool2d", "avg_pool2d"])
def test_pools_on_an_empty_channel_axis_raise_like_torch(pool):
    torch = pytest.importorskip("torch")
    empty = np.zeros((1, 0, 4, 4), np.float32)
    with pytest.raises(RuntimeError):
        getattr(torch.nn.functional, pool)(torch.from_numpy(empty), 2)
    with pytest.raises(InputError, match="at least one channel"):
        getattr(featuremap, pool)(empty, 2)
    # an empty batch is fine, as in torch
    batch = np.zeros((0, 3, 4, 4), np.float32)
    expected = getattr(torch.nn.functional, pool)(torch.from_numpy(batch), 2).shape
    assert getattr(featuremap, pool)(batch, 2).shape == tuple(expected)


# --- torch's pool parameters: ceil_mode, dilation, count_include_pad, divisor_override ----------


def _random_pool(rng, op):
    """A random pool call, as torch takes it, and the same as featuremap's layer parameters."""
    kernel = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = (int(rng.integers(0, kernel[0] // 2 + 2)), int(rng.integers(0, kernel[1] // 2 + 2)))
    ceil_mode = bool(rng.integers(0, 2))
    if op == "max":
        dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        torch_args = (kernel, stride, padding, dilation, ceil_mode)
        ours = {"dilation": dilation, "ceil_mode": ceil_mode}
    else:
        include = bool(rng.integers(0, 2))
        override = int(rng.choice([-2, 1, 3])) if rng.random() < 0.25 else None
        torch_args = (kernel, stride, padding, ceil_mode, include, override)
        ours = {"ceil_mode": ceil_mode, "count_include_pad": include, "divisor_override": override}
    return torch_args, {"kernel_size": kernel, "stride": stride, "padding": list(padding), **ours}


@pytest.mark.parametrize("op", ["max", "avg"])
def test_pools_equal_torch_in_memory_and_chunked_or_refuse_alike(op):
    """Random shapes and parameters: torch's result, on NumPy and on Dask chunkings that divide
    nothing (the average's divisor depends on the block's place), or torch's refusal."""
    torch = pytest.importorskip("torch")
    import dask.array as da

    from featuremap.arrays.dask import blockwise_stack
    from featuremap.engine.layers import PoolLayer
    from featuremap.engine.stack import apply

    rng = np.random.default_rng(7 if op == "max" else 8)
    pool = getattr(torch.nn.functional, f"{op}_pool2d")
    compared = refused = 0
    for _ in range(150):
        height, width = int(rng.integers(2, 14)), int(rng.integers(2, 14))
        image = rng.standard_normal((2, 3, height, width)).astype(np.float32)
        torch_args, ours = _random_pool(rng, op)
        try:
            expected = pool(torch.from_numpy(image), *torch_args).numpy()
        except RuntimeError:
            with pytest.raises(InputError):
                apply(PoolLayer.create(op, **ours), image)
            refused += 1
            continue
        layer = PoolLayer.create(op, **ours)
        np.testing.assert_allclose(apply(layer, image), expected, rtol=1e-5, atol=1e-5)
        chunks = (1, 3, int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1)))
        out_chunks = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        lazy = blockwise_stack(da.from_array(image, chunks=chunks), [layer], out_chunks=out_chunks)
        np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-5, atol=1e-5)
        compared += 1
    assert compared > 40
    assert refused > 10


def test_the_functions_take_torchs_arguments_in_torchs_order():
    torch = pytest.importorskip("torch")
    image = np.random.default_rng(3).standard_normal((1, 2, 11, 9)).astype(np.float32)
    x = torch.from_numpy(image)
    np.testing.assert_allclose(
        featuremap.max_pool2d(image, 3, 2, 1, 2, True),
        torch.nn.functional.max_pool2d(x, 3, 2, 1, 2, True).numpy(),
    )
    np.testing.assert_allclose(
        featuremap.avg_pool2d(image, 3, 2, 1, True, False, None),
        torch.nn.functional.avg_pool2d(x, 3, 2, 1, True, False, None).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(InputError, match="return_indices"):
        featuremap.max_pool2d(image, 2, return_indices=True)


@pytest.mark.parametrize(
    ("op", "kwargs", "message"),
    [
        ("avg", {"dilation": 2}, "dilation is a max pool's parameter"),
        ("max", {"count_include_pad": False}, "an avg pool's parameters"),
        ("avg", {"divisor_override": 0}, "must not be zero"),
        ("max", {"padding": 2, "kernel_size": 3}, "at most half the kernel size 3"),
    ],
)
def test_what_torch_refuses_is_refused(op, kwargs, message):
    from featuremap.engine.layers import PoolLayer

    with pytest.raises(InputError, match=message):
        PoolLayer.create(op, **{"kernel_size": 2, **kwargs})


def test_a_default_pool_is_described_as_before():
    """Pools that use none of the new parameters keep their attributes (and fingerprints)."""
    from featuremap.engine.layers import PoolLayer

    layer = PoolLayer.create("max", 2)
    assert layer.describe() == {"type": "pool", "op": "max", "padding_spec": [[0, 0], [0, 0]]}
    ceil = PoolLayer.create("avg", 3, 2, ceil_mode=True, count_include_pad=False)
    assert ceil.describe()["ceil_mode"] is True
    assert ceil.describe()["count_include_pad"] is False
    assert ceil.geometry((10, 10)).padding == ((0, 1), (0, 1))  # the last, partial window
