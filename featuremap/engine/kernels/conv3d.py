"""``conv3d_valid``: PyTorch ``conv3d(padding=0)`` on already padded NumPy/CuPy volumes.

Two folds turn a 3-D convolution into 2-D ones, so that :func:`.conv.conv2d_valid` (its choice of
im2col GEMM, FFT or 2-D separable passes, and the CUDA direct kernel on CuPy) does the work:

* ``filters``: the ``kz`` taps along ``z`` become filters. Each input plane is convolved in 2-D
  with the ``J kz`` kernels ``w[j, :, tz]`` (a GEMM of ``J kz`` rows on patches of
  ``C/groups ky kx`` taps), and output plane ``z`` sums the responses of planes
  ``z s_z + tz d_z`` to kernel ``tz`` (:func:`_sum_taps`). With a stride ``s_z > 1`` the planes
  fall into ``s_z`` phases, each convolved with only the taps that reach it. The patches are
  ``kz`` times smaller than a 3-D im2col's and the GEMM has ``kz`` times more rows, which is what
  OpenBLAS needs: its SGEMM runs at ~60 GFLOP/s with 16 rows and ~150-200 with 48 or more (one
  thread, SkylakeX kernel; :data:`HALF_ROWS`). The price: responses ``kz`` times the output, read
  once by the sum, and the ``kz - 1`` planes at either end of the volume computed with every tap
  although some of them reach no output plane (:func:`_phases`).
* ``channels``: the ``kz`` taps become channels: for a chunk of output planes the input slab
  ``(planes, C kz, H, W)`` (channel order ``(c, tz)``, so groups stay contiguous; a view for one
  channel) is convolved with the weight ``(J, C/groups kz, ky, kx)``. No sum, but patches of
  ``C/groups kz ky kx`` taps for a GEMM of only ``J`` rows: it wins for one or few channels.

Banks whose every 3-D kernel is rank 1 (Gaussian derivatives) run as 1-D passes instead
(:mod:`.separable3d`). ``method="auto"`` takes the cheapest by a time estimate
(:func:`estimate_seconds`: :func:`.cost.estimate_seconds` of every 2-D call, the GEMM slowed for
few rows, plus the folds' copies, sums and per-call costs). Work goes in chunks of planes of
about :data:`.separable3d.SLAB_BYTES`, so the scratch is bounded whatever the volume.

Measured (``benchmarks/conv3d.py --repeats 7``, 2-core AMD EPYC (Zen 5, AVX-512), OpenBLAS
0.3.31 SkylakeX kernel, torch 2.13 (oneDNN), 2 threads, best of 7 interleaved, padding included;
ratio = torch ``conv3d`` seconds / ours, > 1: featuremap faster), quiet machine:

=======================  ============  =======  =======  =====  ========
layer                    volume        ours s   torch s  ratio  path
=======================  ============  =======  =======  =====  ========
C=1 J=16 k=3             64x128x128    0.0186   0.0692   3.71   channels
C=16 J=16 k=3            32x128x128    0.0460   0.0483   1.05   filters
C=16 J=32 k=3 s=2        64x128x128    0.0425   0.0375   0.88   filters
C=32 J=32 k=3            32x96x96      0.0785   0.0681   0.87   filters
C=8 J=8 k=5              32x128x128    0.0491   0.0453   0.92   filters
C=4 J=8 k=7              32x96x96      0.0362   0.0257   0.71   filters
C=16 J=16 k=3 groups=16  64x128x128    0.0533   0.0993   1.86   filters
C=16 J=16 k=3 dil=2      32x128x128    0.0477   0.0471   0.99   filters
=======================  ============  =======  =======  =====  ========

Geometric mean 1.17, minimum 0.71. This machine is shared and single cases drift by ~20 %
between runs: over five runs the geometric mean was 1.03-1.17, and C=4 J=8 k=7, the weakest
case, 0.65-0.73 (the issue's target: >= 1.0 and no case below 0.7). oneDNN's direct kernels run at 150-250 GFLOP/s here; our 2-D GEMMs at ~90 % of what
OpenBLAS reaches for their shapes (C=4 J=8 k=7: 275 GFLOP/s on the 2-D convolutions), so the
large kernels' losses are the ends of the volume (k=7 on 32 planes: 38 planes x 7 taps computed
for 32 x 7 needed, 16 %), the sum (~10 %) and the fresh memory of the responses. Per-end-plane
calls with only the taps they need were slower (C=8 J=8 k=5: 0.055 s against 0.043 s): small
GEMMs and ~0.4 ms per 2-D call.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from featuremap._typing import Array
from featuremap._validation import parse_choice
from featuremap._vocabulary import CONV_METHODS, ConvMethod
from featuremap.engine.geometry import output_length
from featuremap.engine.kernels import cost, separable3d
from featuremap.engine.kernels._namespace import array_namespace
from featuremap.engine.kernels._threads import run_tiles
from featuremap.engine.kernels.conv import conv2d_valid
from featuremap.engine.kernels.gemm import _even, _quiet_nan
from featuremap.engine.kernels.separable3d import CALL_SECONDS, COPY_SECONDS, plane_chunks
from featuremap.engine.kernels.shapes import check_shapes
from featuremap.errors import InputError, describe

__all__ = ["choose_method", "conv3d_valid", "estimate_seconds"]

Triple = tuple[int, int, int]

#: GEMM rows at which OpenBLAS's SGEMM runs at half its peak: the flops of a GEMM of ``m`` rows
#: cost ``1 + HALF_ROWS / m`` times :data:`.cost.GEMM_FLOPS`'s time.
HALF_ROWS = 24
#: Seconds per response summed into the output by the ``filters`` fold (2 threads).
SUM_SECONDS = 0.3e-9


def _out_shape(
    x_shape: tuple[int, ...], kernel: tuple[int, ...], stride: Triple, dilation: Triple
) -> Triple:
    d, h, w = (
        output_length(n, k, s, dl, 0, 0, axis=axis)
        for n, k, s, dl, axis in zip(x_shape[-3:], kernel, stride, dilation, "zyx", strict=True)
    )
    return d, h, w


def _phases(kz: int, sz: int, dz: int, out_planes: int) -> list[tuple[int, list[int], int, int]]:
    """``(q, taps, m0, m1)`` per plane phase ``q`` of the ``filters`` fold: input plane
    ``q + m s_z`` meets tap ``tz`` (with ``tz d_z = q`` modulo ``s_z``) in output plane
    ``m - (tz d_z - q) / s_z``, and ``m0 <= m < m1`` are the planes that some output plane needs.

    All of them meet every tap of their phase, although the ``kz - 1`` planes at either end have
    no output plane for some taps: computing those too costs less than more 2-D calls with fewer
    filters (C=8 J=8 k=5 on 32 x 128^2: 0.043 s against 0.055 s with one call per end plane).
    """
    phases = []
    for q in range(sz):
        taps = [tz for tz in range(kz) if tz * dz % sz == q]
        if taps:  # lags (tz d_z - q) / s_z grow with tz
            phases.append(
                (q, taps, (taps[0] * dz - q) // sz, out_planes + (taps[-1] * dz - q) // sz)
            )
    return phases


def _filter_calls(
    n_volumes: int,
    weight_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    stride: Triple,
    dilation: Triple,
) -> Iterator[tuple[int, list[int], slice, int, int]]:
    """``(q, taps, volumes, m0, m1)`` of every 2-D call of the ``filters`` fold: input planes
    ``q + m s_z``, ``m0 <= m < m1``, of ``volumes``, about :data:`.separable3d.SLAB_BYTES` of
    responses each."""
    n_filters, _, kz = weight_shape[:3]
    out_d, out_h, out_w = out_shape
    for q, taps, first, last in _phases(kz, stride[0], dilation[0], out_d):
        plane_bytes = 4 * n_filters * len(taps) * out_h * out_w
        for volumes, planes in plane_chunks(n_volumes, last - first, plane_bytes):
            yield q, taps, volumes, first + planes.start, first + planes.stop


def _channel_plane(
    x_shape: tuple[int, ...], weight_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> int:
    """Elements per output plane of the ``channels`` fold: its input slab and its responses."""
    channels, _, height, width = x_shape[-4:]
    n_filters, kz = weight_shape[0], weight_shape[2]
    return channels * kz * height * width + n_filters * out_shape[-2] * out_shape[-1]


def _channel_calls(
    x_shape: tuple[int, ...], weight_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> Iterator[tuple[slice, slice]]:
    """``(volumes, output planes)`` of every 2-D call of the ``channels`` fold of volumes
    ``x_shape (N, C, D, H, W)``, about :data:`.separable3d.SLAB_BYTES` each."""
    plane_bytes = 4 * _channel_plane(x_shape, weight_shape, out_shape)
    yield from plane_chunks(x_shape[0], out_shape[0], plane_bytes)


def _gemm2d_seconds(
    images: int,
    x_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: Triple,
    dilation: Triple,
    groups: int,
) -> float:
    """Estimated seconds of the 2-D convolution of ``images`` planes ``x_shape (C, H, W)`` by
    ``weight_shape``: :func:`.cost.estimate_seconds`'s cheaper of GEMM and FFT, the GEMM slowed
    down for few rows per group (:data:`HALF_ROWS`)."""
    shape = (images, *x_shape)
    pair = (stride[1], stride[2]), (dilation[1], dilation[2])
    gemm = cost.estimate_seconds("gemm", shape, weight_shape, *pair, groups)
    n_filters, group_channels, kh, kw = weight_shape
    out_h = (x_shape[1] - pair[1][0] * (kh - 1) - 1) // pair[0][0] + 1
    out_w = (x_shape[2] - pair[1][1] * (kw - 1) - 1) // pair[0][1] + 1
    flops = 2.0 * images * out_h * out_w * n_filters * group_channels * kh * kw
    gemm += flops / cost.GEMM_FLOPS * HALF_ROWS / (n_filters // groups)
    return min(gemm, cost.estimate_seconds("fft", shape, weight_shape, *pair, groups))


def estimate_seconds(
    method: str,
    x_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: Triple,
    dilation: Triple,
    groups: int,
) -> float:
    """Estimated seconds of ``method`` (``"filters"`` or ``"channels"``, the folds) on padded
    volumes ``x_shape (..., C, D, H, W)``."""
    volumes = (math.prod(x_shape[:-4]), *x_shape[-4:])
    channels, _, height, width = x_shape[-4:]
    n_filters, group_channels, kz, ky, kx = weight_shape
    out_shape = _out_shape(x_shape, weight_shape[2:], stride, dilation)
    if method == "channels":
        seconds = 0.0
        for chunk, planes in _channel_calls(volumes, weight_shape, out_shape):
            images = (chunk.stop - chunk.start) * (planes.stop - planes.start)
            seconds += _gemm2d_seconds(
                images,
                (channels * kz, height, width),
                (n_filters, group_channels * kz, ky, kx),
                stride,
                dilation,
                groups,
            )
            copies = images * _channel_plane(x_shape, weight_shape, out_shape)
            seconds += copies * COPY_SECONDS + CALL_SECONDS
        return seconds
    if method == "filters":
        seconds = volumes[0] * n_filters * kz * math.prod(out_shape) * SUM_SECONDS
        for _, taps, chunk, m0, m1 in _filter_calls(
            volumes[0], weight_shape, out_shape, stride, dilation
        ):
            seconds += CALL_SECONDS + _gemm2d_seconds(
                (chunk.stop - chunk.start) * (m1 - m0),
                (channels, height, width),
                (n_filters * len(taps), group_channels, ky, kx),
                stride,
                dilation,
                groups,
            )
        return seconds
    raise ValueError(f"no cost model for method {method!r}")


def choose_method(
    x_shape: tuple[int, ...],
    weight: Array,
    stride: Triple,
    dilation: Triple,
    groups: int,
    finite: bool = True,
) -> str:
    """The path :func:`conv3d_valid` takes with ``method="auto"``: ``"separable"`` (1-D passes,
    :mod:`.separable3d`), or the fold ``"filters"`` or ``"channels"`` (module docstring).

    ``finite``: whether the input holds no NaN/Inf (else never ``"separable"``).
    """
    check_shapes(tuple(x_shape), weight.shape, groups)
    return _choose(tuple(x_shape), weight, stride, dilation, groups, finite)[0]


def _choose(
    x_shape: tuple[int, ...],
    weight: Array,
    stride: Triple,
    dilation: Triple,
    groups: int,
    finite: bool,
) -> tuple[str, list[separable3d.VolumePlan] | None]:
    """``(path, separable plan or None)`` of the cheapest path."""
    costs = {
        fold: estimate_seconds(fold, x_shape, weight.shape, stride, dilation, groups)
        for fold in ("filters", "channels")
    }
    fold = min(costs, key=costs.__getitem__)
    if finite:
        plans = separable3d.plan_separable3d(weight, groups)
        if plans is not None:
            out_shape = _out_shape(x_shape, weight.shape[2:], stride, dilation)
            seconds = separable3d.estimate_seconds(x_shape, out_shape, plans, stride, dilation)
            if seconds < costs[fold]:
                return "separable", plans
    return fold, None


def conv3d_valid(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    *,
    stride: Sequence[int] = (1, 1, 1),
    dilation: Sequence[int] = (1, 1, 1),
    groups: int = 1,
    method: ConvMethod = "auto",
) -> Array:
    """Cross-correlation of an already padded volume, exactly ``torch.nn.functional.conv3d(padding=0)``.

    Parameters
    ----------
    x : array, float32, shape (..., C, D, H, W)
        Any number of leading batch axes; NumPy or CuPy. Other dtypes are converted to float32.
    weight : array, shape (J, C/groups, kz, ky, kx)
    bias : array of shape (J,), optional
    stride, dilation : sequence of 3 int
        ``(z, y, x)``, parsed already.
    groups : int
    method : {"auto", "gemm", "fft", "separable", "direct"}
        ``"auto"`` picks the cheapest path (:func:`choose_method`). ``"separable"`` forces the
        1-D passes (``ValueError`` where a kernel is not rank 1 or the input holds NaN/Inf);
        ``"gemm"``, ``"fft"`` and ``"direct"`` (CuPy only) are the method of every 2-D
        convolution of the fold (:func:`.conv.conv2d_valid`).

    Returns
    -------
    array, float32, shape (..., J, D_out, H_out, W_out)
        ``D_out = (D - d_z (kz - 1) - 1) // s_z + 1``, likewise ``H_out`` and ``W_out``.
    """
    method = parse_choice("method", method, CONV_METHODS)
    xp = array_namespace(x)
    x = xp.asarray(x, dtype=xp.float32)
    weight = xp.asarray(weight, dtype=xp.float32)
    check_shapes(x.shape, weight.shape, groups)
    stride, dilation = _triple("stride", stride), _triple("dilation", dilation)
    out_shape = _out_shape(x.shape, weight.shape[2:], stride, dilation)
    n_filters = weight.shape[0]
    if bias is not None:
        bias = xp.asarray(bias, dtype=xp.float32)
        if bias.shape != (n_filters,):
            raise InputError(
                f"bias must have shape ({n_filters},) to match the weight, got shape {bias.shape}"
            )
    batch = x.shape[:-4]
    volumes = x.reshape((-1, *x.shape[-4:]))
    path, plans = _path(method, volumes, weight, stride, dilation, groups)
    out = xp.zeros((volumes.shape[0], n_filters, *out_shape), dtype=xp.float32)
    if plans is not None:
        separable3d.separable_conv3d(volumes, plans, stride, dilation, out)
    else:
        fold = _fold_filters if path == "filters" else _fold_channels
        fold(volumes, weight, stride, dilation, groups, method, out)
    if bias is not None:
        out += bias[:, None, None, None]
    return out.reshape(batch + out.shape[1:])


def _triple(name: str, values: Sequence[int]) -> Triple:
    if len(values) != 3:
        raise InputError(f"conv3d {name} needs 3 values (z, y, x), got {describe(values)}")
    z, y, x = values
    return z, y, x


def _finite(x: Array) -> bool:
    return bool(array_namespace(x).isfinite(x).all())


def _path(
    method: str, volumes: Array, weight: Array, stride: Triple, dilation: Triple, groups: int
) -> tuple[str, list[separable3d.VolumePlan] | None]:
    """Resolve ``method`` to ``(path, separable plan)``, refusing a forced separable path that
    cannot apply. Only ``"auto"`` choosing the separable path pays the finiteness check."""
    if method == "separable":
        if not _finite(volumes):
            raise ValueError(
                "method 'separable' cannot be used on an input with NaN or Inf (it would spread "
                "them beyond the windows that touch them); use method 'gemm' or 'auto'"
            )
        plans = separable3d.plan_separable3d(weight, groups)
        if plans is None:
            raise ValueError(
                "method 'separable' needs every kernel of the bank to be rank 1 (an outer product "
                "of a z, a y and an x filter); use method 'gemm', 'fft' or 'auto'"
            )
        return method, plans
    path, plans = _choose(volumes.shape, weight, stride, dilation, groups, method == "auto")
    if plans is not None and not _finite(volumes):
        return _choose(volumes.shape, weight, stride, dilation, groups, False)
    return path, plans


def _fold_filters(
    x: Array,
    weight: Array,
    stride: Triple,
    dilation: Triple,
    groups: int,
    method: ConvMethod,
    out: Array,
) -> None:
    """The ``filters`` fold (module docstring) of ``x (N, C, D, H, W)``, added into ``out``."""
    xp = array_namespace(x)
    channels, _, height, width = x.shape[1:]
    n_filters, group_channels, _, ky, kx = weight.shape
    (sz, sy, sx), (dz, dy, dx) = stride, dilation
    out_h, out_w = out.shape[-2:]
    kernels = {}  # per phase: (J |taps|, C/groups, ky, kx), filter j tap tz at j |taps| + i
    for phase, taps, volumes, m0, m1 in _filter_calls(
        x.shape[0], weight.shape, out.shape[-3:], stride, dilation
    ):
        if phase not in kernels:
            kernels[phase] = xp.ascontiguousarray(weight[:, :, taps].transpose(0, 2, 1, 3, 4))
        # (n, planes, C, H, W): a view of one volume's planes, a copy of several volumes'
        slab = x[volumes, :, phase + m0 * sz : phase + (m1 - 1) * sz + 1 : sz]
        n = slab.shape[0]
        responses = conv2d_valid(
            slab.transpose(0, 2, 1, 3, 4).reshape((n * (m1 - m0), channels, height, width)),
            kernels[phase].reshape((n_filters * len(taps), group_channels, ky, kx)),
            stride=(sy, sx),
            dilation=(dy, dx),
            groups=groups,
            method=method,
        ).reshape((n, m1 - m0, n_filters, len(taps), out_h, out_w))
        _sum_taps(responses, [(tz * dz - phase) // sz for tz in taps], m0, out[volumes])


def _sum_taps(responses: Array, lags: list[int], m0: int, out: Array) -> None:
    """``out[:, :, m - lag] += responses[:, m - m0, :, i]`` for tap ``i`` of lag ``lag``, in
    parallel over blocks of filters."""
    xp = array_namespace(out)
    n_filters, out_d = out.shape[1:3]
    planes = responses.shape[1]

    def add(filters: slice) -> None:
        for i, lag in enumerate(lags):
            z0, z1 = max(0, m0 - lag), min(out_d, m0 + planes - lag)
            if z0 < z1:
                source = responses[:, z0 + lag - m0 : z1 + lag - m0, filters, i]
                with _quiet_nan(xp):
                    out[:, filters, z0:z1] += source.transpose(0, 2, 1, 3, 4)

    step = _even(n_filters, max(1, n_filters // 4))
    run_tiles(
        add,
        (slice(j0, min(j0 + step, n_filters)) for j0 in range(0, n_filters, step)),
        parallel=xp.__name__ == "numpy",
    )


def _fold_channels(
    x: Array,
    weight: Array,
    stride: Triple,
    dilation: Triple,
    groups: int,
    method: ConvMethod,
    out: Array,
) -> None:
    """The ``channels`` fold (module docstring) of ``x (N, C, D, H, W)``, written into ``out``."""
    xp = array_namespace(x)
    channels, _, height, width = x.shape[1:]
    n_filters, group_channels, kz, ky, kx = weight.shape
    (sz, sy, sx), (dz, dy, dx) = stride, dilation
    out_h, out_w = out.shape[-2:]
    kernels = weight.reshape((n_filters, group_channels * kz, ky, kx))
    # (N, C, D - span + 1, H, W, span): every z window of every plane, as a view
    windows = xp.lib.stride_tricks.sliding_window_view(x, dz * (kz - 1) + 1, axis=2)
    for volumes, planes in _channel_calls(x.shape, weight.shape, out.shape[-3:]):
        z0, z1 = planes.start, planes.stop
        selected = windows[volumes, :, z0 * sz : (z1 - 1) * sz + 1 : sz, :, :, ::dz]
        n = selected.shape[0]
        # (n planes, C kz, H, W): copied, but a view of one volume of one channel
        slab = selected.transpose(0, 2, 1, 5, 3, 4).reshape(
            (n * (z1 - z0), channels * kz, height, width)
        )
        responses = conv2d_valid(
            slab,
            kernels,
            stride=(sy, sx),
            dilation=(dy, dx),
            groups=groups,
            method=method,
        )
        out[volumes, :, z0:z1] = responses.reshape((n, z1 - z0, n_filters, out_h, out_w)).transpose(
            0, 2, 1, 3, 4
        )
