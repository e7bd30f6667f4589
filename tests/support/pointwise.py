"""Pointwise layer kinds under test: a stack ``conv (padding 1, reflect) -> the layers``, run in
memory (:func:`featuremap.engine.stack.apply_stack`) and on a Dask array with odd chunks
(:func:`featuremap.arrays.dask.blockwise_stack`), which must agree."""

from __future__ import annotations

import dask.array as da
import numpy as np

from featuremap.arrays.dask import blockwise_stack
from featuremap.engine.layers import ConvLayer
from featuremap.engine.stack import apply_stack

#: Odd chunks of a ``(batch, C, ...)`` image: per spatial axis, pieces of 3, 5 and the rest.
ODD = {2: (1, 1, (3, 5, 9), (5, 3, 12)), 3: (1, 1, (2, 3, 4), (3, 5, 5), (4, 7, 2))}


def image(ndim: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A ``(2, channels, *spatial)`` float32 image matching :data:`ODD`."""
    spatial = (17, 20) if ndim == 2 else (9, 13, 13)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, channels, *spatial)).astype(np.float32)


def conv(ndim: int, in_channels: int, out_channels: int, seed: int = 1) -> ConvLayer:
    """A random 3x3 (3x3x3) conv, ``padding=1`` with ``reflect`` (geometry unchanged)."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((out_channels, in_channels, *(3,) * ndim)).astype(np.float32)
    return ConvLayer.create(weight, padding=1, padding_mode="reflect")


def chunked_equals_in_memory(layers: list, x: np.ndarray) -> np.ndarray:
    """``apply_stack(layers, x)``, checked against the stack on ``x`` in :data:`ODD` chunks."""
    expected = apply_stack(layers, x)
    chunks = ODD[x.ndim - 2][: x.ndim]
    got = blockwise_stack(da.from_array(x, chunks=chunks), layers).compute(scheduler="sync")
    assert got.dtype == np.float32
    scale = float(np.nanmax(np.abs(expected))) or 1.0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale)
    return expected
