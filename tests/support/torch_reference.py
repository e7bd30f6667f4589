"""Oracles of the kernels, shared by ``kernels/``, ``blockwise/`` and ``test_gpu.py``: torch on the
CPU (``torch.nn.functional``) and a float64 direct convolution independent of torch and of
featuremap, plus the conv cases and the tolerance every backend is held to."""

from __future__ import annotations

import functools
from types import ModuleType

import numpy as np
import pytest


@functools.cache
def torch() -> ModuleType:
    """torch, imported on first use (a test that needs it is skipped without it), on one thread.

    Imported lazily: most importers of this module use only its cases and float64 oracles."""
    module = pytest.importorskip("torch")
    module.set_num_threads(1)
    return module


#: featuremap's activation names and their torch equivalents
TORCH_ACTIVATIONS = {
    "none": lambda t: t,
    "relu": lambda t: torch().relu(t),
    "tanh": lambda t: torch().tanh(t),
    "sigmoid": lambda t: torch().sigmoid(t),
    "abs": lambda t: torch().abs(t),
    "square": lambda t: torch().square(t),
    "sqrt": lambda t: torch().sqrt(t),
}

# (batch, C, J, kh, kw, stride, dilation, groups, H, W)
CONV_CASES = [
    ((), 1, 4, 3, 3, (1, 1), (1, 1), 1, 20, 21),
    ((2,), 4, 6, 5, 3, (2, 1), (2, 1), 2, 33, 28),
    ((2, 3), 3, 3, 7, 7, (3, 3), (1, 1), 3, 17, 18),  # depthwise
    ((), 16, 32, 1, 1, (1, 1), (1, 1), 1, 12, 11),  # 1x1
    ((), 2, 5, 2, 2, (5, 4), (1, 1), 1, 23, 24),  # stride larger than the kernel
    ((1,), 2, 2, 9, 8, (1, 1), (1, 1), 1, 9, 8),  # kernel as large as the input
    ((), 6, 4, 3, 4, (2, 3), (3, 2), 2, 30, 31),  # dilation, even kernel
    ((), 1, 3, 15, 15, (1, 1), (1, 1), 1, 40, 37),  # large kernel
]


def torch_conv(x, weight, bias, stride, dilation, groups):
    """torch conv2d on (..., C, H, W) with any number of batch axes."""
    t = torch()
    batch = x.shape[:-3]
    images = t.from_numpy(np.ascontiguousarray(x.reshape((-1, *x.shape[-3:]))))
    b = None if bias is None else t.from_numpy(bias)
    result = t.nn.functional.conv2d(
        images, t.from_numpy(weight), b, stride=stride, dilation=dilation, groups=groups
    )
    return result.numpy().reshape(batch + tuple(result.shape[1:]))


def tolerance(x, weight):
    """1e-4 * sum|w| * max|x| per output channel, broadcastable against (..., J, H, W)."""
    per_filter = np.abs(weight.astype(np.float64)).sum(axis=(1, 2, 3))
    return 1e-4 * per_filter[:, None, None] * max(np.abs(x).max(), 1.0)


def assert_close(result, expected, x, weight):
    """float32 ``result`` equal to ``expected`` within :func:`tolerance`."""
    assert result.dtype == np.float32
    assert result.shape == expected.shape
    error = np.abs(result.astype(np.float64) - expected)
    assert np.all(error <= tolerance(x, weight)), float(error.max())


def reference64(x, weight, bias, stride, dilation, groups):
    """Direct loops over taps in float64 (independent of torch and of the implementation)."""
    x64, w64 = x.astype(np.float64), weight.astype(np.float64)
    n_filters, group_channels, kh, kw = weight.shape
    (sy, sx), (dy, dx) = stride, dilation
    out_h = (x.shape[-2] - dy * (kh - 1) - 1) // sy + 1
    out_w = (x.shape[-1] - dx * (kw - 1) - 1) // sx + 1
    out = np.zeros((*x.shape[:-3], n_filters, out_h, out_w))
    per_group = n_filters // groups
    for j in range(n_filters):
        first = (j // per_group) * group_channels
        for c in range(group_channels):
            for ty in range(kh):
                for tx in range(kw):
                    rows = slice(ty * dy, ty * dy + (out_h - 1) * sy + 1, sy)
                    cols = slice(tx * dx, tx * dx + (out_w - 1) * sx + 1, sx)
                    out[..., j, :, :] += w64[j, c, ty, tx] * x64[..., first + c, rows, cols]
        if bias is not None:
            out[..., j, :, :] += bias[j]
    return out


def gaussian_bank(size=9, sigmas=(1.0, 2.0)):
    """Gaussian derivatives of orders (0,0),(0,1),(1,0),(0,2),(1,1),(2,0): exactly rank 1."""
    t = np.arange(size) - size // 2
    filters = []
    for sigma in sigmas:
        g = np.exp(-(t**2) / (2 * sigma**2))
        g /= g.sum()
        derivatives = [g, -t / sigma**2 * g, (t**2 / sigma**4 - 1 / sigma**2) * g]
        for oy, ox in [(0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (2, 0)]:
            filters.append(np.outer(derivatives[oy], derivatives[ox]))
    return np.stack(filters)[:, None].astype(np.float32)


def case_arrays(seed, batch, channels, n_filters, kh, kw, groups, height, width):
    """Seeded input, weight and bias of one of :data:`CONV_CASES`."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*batch, channels, height, width)).astype(np.float32)
    weight = rng.standard_normal((n_filters, channels // groups, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(n_filters).astype(np.float32)
    return x, weight, bias


def torch_stack(layers, image):
    """A stack of zero-padded conv layers (``padding_mode`` zeros) and pools on one
    ``(C, H, W)`` image through ``torch.nn.functional``: the oracle of stack-level tests."""
    t = torch()
    F = t.nn.functional
    x = t.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    for layer in layers:
        (top, bottom), (left, right) = layer.geometry(tuple(x.shape[-2:])).padding
        if layer.kind == "conv":
            bias = None if layer.bias is None else t.from_numpy(layer.bias)
            x = F.conv2d(
                F.pad(x, (left, right, top, bottom)),
                t.from_numpy(layer.weight),
                bias,
                stride=layer.stride,
                dilation=layer.dilation,
                groups=layer.groups,
            )
            x = TORCH_ACTIVATIONS[layer.activation](x)
        else:
            fill = float("-inf") if layer.op == "max" else 0.0
            padded = F.pad(x, (left, right, top, bottom), value=fill)
            pool = F.max_pool2d if layer.op == "max" else F.avg_pool2d
            x = pool(padded, layer.kernel_size, layer.stride)
    return x[0].numpy()
