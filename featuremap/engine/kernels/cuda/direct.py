"""Direct shared-memory CUDA convolution for small kernels, launched through CuPy.

The kernel (``direct_conv2d.cu`` beside this file) computes one output pixel per thread for a
tile of up to ``OC_TILE`` output channels, with the input tile plus its halo in shared memory.
The launch geometry is planned here in plain Python (:func:`plan_launch`), so it is tested on
machines without a GPU (the test suite runs the same ``.cu`` source on the host with an
emulated block); CuPy is imported only when :func:`direct_conv2d` runs.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featuremap._typing import Array
from featuremap.engine.geometry import ceil_div
from featuremap.errors import InputError

__all__ = [
    "KERNEL_NAME",
    "MAX_KERNEL_SIZE",
    "MAX_SHARED_BYTES",
    "SOURCE",
    "LaunchPlan",
    "direct_conv2d",
    "plan_launch",
    "supports",
]

#: The CUDA source file; shipped as package data.
SOURCE = Path(__file__).with_name("direct_conv2d.cu")
KERNEL_NAME = "direct_conv2d_f32"
#: Largest kernel side the direct path is meant for; beyond it GEMM/FFT reuse data better.
MAX_KERNEL_SIZE = 7
#: Dynamic shared memory a kernel may use on every CUDA GPU without an opt-in attribute.
MAX_SHARED_BYTES = 48 * 1024
_FLOAT_BYTES = 4
_INT32_MAX = 2**31 - 1
_GRID_Z_MAX = 65535


@functools.cache
def _tile_constants() -> dict[str, int]:
    """``TILE_H``, ``TILE_W``, ``OC_TILE`` as ``#define``-d in the source (one source of truth)."""
    defines = dict(
        re.findall(r"^#define\s+(\w+)\s+(\d+)\s*$", SOURCE.read_text(), flags=re.MULTILINE)
    )
    return {name: int(defines[name]) for name in ("TILE_H", "TILE_W", "OC_TILE")}


@dataclass(frozen=True)
class LaunchPlan:
    """Grid, block, dynamic shared memory and output shape of one kernel launch."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int
    out_shape: tuple[int, int, int, int]


def _shared_bytes(
    kernel_size: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> int:
    """Shared memory of one block: the input tile + halo and ``OC_TILE`` filters' taps."""
    tiles = _tile_constants()
    (kh, kw), (sy, sx), (dy, dx) = kernel_size, stride, dilation
    in_h = (tiles["TILE_H"] - 1) * sy + (kh - 1) * dy + 1
    in_w = (tiles["TILE_W"] - 1) * sx + (kw - 1) * dx + 1
    return (in_h * in_w + tiles["OC_TILE"] * kh * kw) * _FLOAT_BYTES


def supports(
    kernel_size: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> bool:
    """Whether the direct kernel should run this layer: sides up to 7 and the tile fits shared memory."""
    return (
        max(kernel_size) <= MAX_KERNEL_SIZE
        and _shared_bytes(kernel_size, stride, dilation) <= MAX_SHARED_BYTES
    )


def plan_launch(
    x_shape: tuple[int, int, int, int],
    weight_shape: tuple[int, int, int, int],
    *,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> LaunchPlan:
    """Plan the launch for a valid cross-correlation of ``x (N, C, H, W)`` by ``weight (J, C/groups, kh, kw)``.

    Raises
    ------
    InputError
        When the shapes do not match, the window is larger than the input, an extent exceeds
        the kernel's 32-bit indices or the tile does not fit in shared memory.
    """
    n_images, channels, height, width = x_shape
    n_filters, group_channels, kh, kw = weight_shape
    (sy, sx), (dy, dx) = stride, dilation
    if channels != group_channels * groups or n_filters % groups:
        raise InputError(
            f"direct_conv2d: weight {tuple(weight_shape)} with groups={groups} does not fit an input "
            f"of {channels} channels; need C = weight.shape[1] * groups and J divisible by groups"
        )
    out_h = (height - dy * (kh - 1) - 1) // sy + 1
    out_w = (width - dx * (kw - 1) - 1) // sx + 1
    if out_h < 1 or out_w < 1:
        raise InputError(
            f"direct_conv2d: input {height}x{width} is smaller than the dilated kernel "
            f"{dy * (kh - 1) + 1}x{dx * (kw - 1) + 1}; pad the input first"
        )
    if max(*x_shape, n_filters) > _INT32_MAX:  # extents are int32 in the kernel, offsets 64-bit
        raise InputError(
            f"direct_conv2d: input shape {tuple(x_shape)} exceeds the kernel's 32-bit extents"
        )
    shared_bytes = _shared_bytes((kh, kw), stride, dilation)
    if shared_bytes > MAX_SHARED_BYTES:
        raise InputError(
            f"direct_conv2d: kernel {kh}x{kw} with stride {stride} and dilation {dilation} needs "
            f"{shared_bytes} bytes of shared memory (at most {MAX_SHARED_BYTES}); use the GEMM method"
        )
    tiles = _tile_constants()
    oc_tiles = ceil_div(n_filters // groups, tiles["OC_TILE"])
    grid = (
        ceil_div(out_w, tiles["TILE_W"]),
        ceil_div(out_h, tiles["TILE_H"]),
        max(1, min(n_images * groups * oc_tiles, _GRID_Z_MAX)),
    )
    return LaunchPlan(
        grid=grid,
        block=(tiles["TILE_W"], tiles["TILE_H"], 1),
        shared_bytes=shared_bytes,
        out_shape=(n_images, n_filters, out_h, out_w),
    )


@functools.cache
def _kernel() -> Any:
    """The compiled kernel; CuPy caches the binary per device and on disk."""
    import cupy

    return cupy.RawKernel(SOURCE.read_text(), KERNEL_NAME, options=("--std=c++14",))


def direct_conv2d(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    *,
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
) -> Any:
    """Valid cross-correlation on the GPU, ``torch.nn.functional.conv2d`` semantics.

    Parameters
    ----------
    x : cupy.ndarray of shape ``(..., C, H, W)``
        Already padded; converted to contiguous float32 if it is not.
    weight : cupy.ndarray of shape ``(J, C / groups, kh, kw)``
    bias : cupy.ndarray of shape ``(J,)``, optional
    stride, dilation : (int, int)
    groups : int

    Returns
    -------
    cupy.ndarray of shape ``(..., J, H_out, W_out)``, float32
    """
    import cupy

    if x.ndim < 3:
        raise InputError(
            f"direct_conv2d needs an input of shape (..., C, H, W), got shape {x.shape}"
        )
    batch_shape = x.shape[:-3]
    images = cupy.ascontiguousarray(x.reshape((-1, *x.shape[-3:])), dtype=cupy.float32)
    weight = cupy.ascontiguousarray(weight, dtype=cupy.float32)
    n_filters, group_channels, kh, kw = weight.shape
    plan = plan_launch(
        images.shape,
        (n_filters, group_channels, kh, kw),
        stride=stride,
        dilation=dilation,
        groups=groups,
    )
    out = cupy.empty(plan.out_shape, dtype=cupy.float32)
    if out.size:
        bias = (
            cupy.zeros(weight.shape[0], cupy.float32)
            if bias is None
            else cupy.ascontiguousarray(bias, cupy.float32)
        )
        extents = (
            *images.shape,
            weight.shape[0],
            *weight.shape[2:],
            *plan.out_shape[2:],
            *stride,
            *dilation,
            groups,
        )
        _kernel()(
            plan.grid,
            plan.block,
            (images, weight, bias, out, *(cupy.int32(value) for value in extents)),
            shared_mem=plan.shared_bytes,
        )
    return out.reshape(batch_shape + plan.out_shape[1:])
