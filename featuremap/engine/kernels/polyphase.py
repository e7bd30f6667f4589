"""Polyphase strided convolution: space-to-depth into ``s_y s_x`` stride-1 phases, then the GEMM.

Tap ``(ky, kx)`` of a stride-``s`` convolution reads input row ``oy s_y + ky d_y`` = row
``oy + (ky d_y) // s_y`` of the phase image ``x[..., (ky d_y) % s_y :: s_y, :]`` (likewise along
``x``). Copying the input once into its ``s_y s_x`` phases (as extra channels) turns the layer into
a stride-1, dilation-1 convolution with a kernel of ``L_y = (d_y (kh - 1)) // s_y + 1`` by
``L_x`` taps, the taps that no original tap maps to being zero. The GEMM then copies contiguous
rows only (:mod:`.gemm`'s fastest patch copy), at the price of the phase copy (one pass over the
input) and of the zero taps' multiply-adds: ``s_y s_x L_y L_x / (kh kw)`` times as many
(11x11/4: 144 / 121 = 1.19; 5x5/2: 36 / 25 = 1.44). The cost model (:mod:`.conv`) counts both,
which keeps it off 5x5/2-type layers where it measured 20-35 % slower (issue 24).

Non-finite inputs: a zero tap reading a NaN/Inf pixel that no original tap reads would spread
it (``0 * NaN = NaN``), so the caller recomputes an output that is not all finite by the exact
GEMM path (:func:`._namespace.finite_sum`).
"""

from __future__ import annotations

from featuremap._typing import Array
from featuremap.engine.kernels._namespace import array_namespace
from featuremap.engine.kernels.gemm import gemm_conv

__all__ = ["phase_kernel", "polyphase_conv"]


def phase_kernel(kernel: int, stride: int, dilation: int) -> int:
    """Taps per axis of the stride-1 phase kernel: ``(d (k - 1)) // s + 1``."""
    return dilation * (kernel - 1) // stride + 1


def _phase_weight(
    weight: Array, stride: tuple[int, int], dilation: tuple[int, int], lengths: tuple[int, int]
) -> Array:
    """``(J, C/groups * s_y * s_x, L_y, L_x)``: tap ``(ky, kx)`` of channel ``c`` at channel
    ``(c s_y + p_y) s_x + p_x``, offset ``((ky d_y) // s_y, (kx d_x) // s_x)``."""
    xp = array_namespace(weight)
    n_filters, group_channels, kh, kw = weight.shape
    (sy, sx), (dy, dx) = stride, dilation
    phased = xp.zeros((n_filters, group_channels, sy, sx, *lengths), dtype=weight.dtype)
    for ky in range(kh):
        py, ay = divmod(ky * dy, sy)[::-1]
        for kx in range(kw):
            px, ax = divmod(kx * dx, sx)[::-1]
            phased[:, :, py, px, ay, ax] = weight[:, :, ky, kx]
    return phased.reshape(n_filters, group_channels * sy * sx, *lengths)


def _phase_images(x: Array, stride: tuple[int, int], size: tuple[int, int]) -> Array:
    """``(N, C s_y s_x, size_y, size_x)``: phase ``(p_y, p_x)`` of channel ``c`` is
    ``x[n, c, p_y::s_y, p_x::s_x]`` cut or zero-filled to ``size``."""
    xp = array_namespace(x)
    n_images, channels, height, width = x.shape
    sy, sx = stride
    phases = xp.zeros((n_images, channels, sy, sx, *size), dtype=x.dtype)
    for py in range(sy):
        rows = min(size[0], -(-(height - py) // sy))
        for px in range(sx):
            cols = min(size[1], -(-(width - px) // sx))
            if rows <= 0 or cols <= 0:
                continue  # an input smaller than the stride cell: this phase stays zero
            source = x[:, :, py : py + (rows - 1) * sy + 1 : sy, px : px + (cols - 1) * sx + 1 : sx]
            phases[:, :, py, px, :rows, :cols] = source
    return phases.reshape(n_images, channels * sy * sx, *size)


def polyphase_conv(
    x: Array,
    weight: Array,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    out: Array,
) -> Array:
    """Valid cross-correlation of ``x (N, C, H, W)`` into ``out (N, J, H_out, W_out)`` through
    the phases (module docstring); float32, already validated, finite input."""
    kh, kw = weight.shape[-2:]
    lengths = (
        phase_kernel(kh, stride[0], dilation[0]),
        phase_kernel(kw, stride[1], dilation[1]),
    )
    rows, cols = out.shape[-2:]
    size = (rows + lengths[0] - 1, cols + lengths[1] - 1)
    phases = _phase_images(x, stride, size)
    return gemm_conv(
        phases, _phase_weight(weight, stride, dilation, lengths), (1, 1), (1, 1), groups, out
    )
