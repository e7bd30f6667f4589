"""The compiled loop of :mod:`.numba_direct` (imports numba: only imported by it, on the first call
that the cost model sends there).

One output row at a time, in a row-sized accumulator (a fresh allocation, so LLVM knows it
aliases no input and vectorises the tap loop): for every channel of the group and every tap,
``acc[lo:hi] += w * x_row[...]`` over the output columns whose tap falls inside the input --
zero padding is never materialised, taps outside the input are skipped. The column loop is
written once per stride kind: a contiguous slice (stride 1) vectorises to full-width FMAs, a
strided one to gathers; one loop over both would type both as strided.
"""

from __future__ import annotations

import numpy as np

from featuremap.engine._numba import compile_loop

__all__ = ["direct_rows"]

_SIGNATURE = (
    "void(float32[:, :, :, ::1], float32[:, :, :, ::1], float32[::1], float32[:, :, :, ::1], "
    "int64, int64, int64, int64, int64, int64, int64, int64, int64)"
)


def _direct_rows(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    out: np.ndarray,
    groups: int,
    stride_y: int,
    stride_x: int,
    dilation_y: int,
    dilation_x: int,
    top: int,
    left: int,
    first: int,
    last: int,
) -> None:
    n_filters, group_channels, kh, kw = w.shape
    height, width = x.shape[2], x.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    filters_per_group = n_filters // groups
    lows = np.empty(kw, np.int64)  # per column tap: the output columns [lo, hi) it reads inside
    highs = np.empty(kw, np.int64)
    for b in range(kw):
        shift = b * dilation_x - left
        lows[b] = 0 if shift >= 0 else min(out_w, (stride_x - 1 - shift) // stride_x)
        highs[b] = max(lows[b], min(out_w, (width - 1 - shift) // stride_x + 1))
    acc = np.empty(out_w, np.float32)
    for pair in range(first, last):  # (image, filter) pairs, image-major
        n = pair // n_filters
        j = pair % n_filters
        channel0 = (j // filters_per_group) * group_channels
        for i in range(out_h):
            acc[:] = bias[j]
            for c in range(group_channels):
                for a in range(kh):
                    row = i * stride_y + a * dilation_y - top
                    if row < 0 or row >= height:
                        continue  # a row of zero padding
                    source = x[n, channel0 + c, row]
                    for b in range(kw):
                        lo = lows[b]
                        hi = highs[b]
                        if hi <= lo:
                            continue  # this tap reads padding only (a negative slice would wrap)
                        shift = b * dilation_x - left
                        weight = w[j, c, a, b]
                        target = acc[lo:hi]
                        if stride_x == 1:
                            taps = source[lo + shift : hi + shift]
                            for o in range(hi - lo):
                                target[o] += weight * taps[o]
                        else:
                            start = lo * stride_x + shift
                            strided = source[start : (hi - 1) * stride_x + shift + 1 : stride_x]
                            for o in range(hi - lo):
                                target[o] += weight * strided[o]
            out[n, j, i, :] = acc


#: ``direct_rows(x, w, bias, out, groups, stride_y, stride_x, dilation_y, dilation_x, top, left,
#: first, last)``: ``out[n, j]`` of the (image, filter) pairs ``first <= n * J + j < last``;
#: ``x (N, C, H, W)`` unpadded with ``top``/``left`` zeros implied (bottom/right by ``out``'s
#: shape), ``w (J, C/groups, kh, kw)``, ``bias (J,)``; float32, C-contiguous.
direct_rows = compile_loop(_direct_rows, _SIGNATURE)
