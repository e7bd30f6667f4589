"""The time model of :func:`.conv.conv2d_valid`'s ``method="auto"``: which path is cheapest.

Six CPU paths give the same result to float32 rounding; ``"auto"`` takes the cheapest by
a time estimate (:func:`estimate_seconds`) whose constants were fitted on the 2-core development
machine (AMD EPYC, AVX-512, OpenBLAS 0.3.31, 2 threads), see ``benchmarks/kernels.py``:

* ``gemm``: tiled im2col + BLAS (:mod:`.gemm`), ``2 J C_g kh kw`` flops per output pixel at
  about ``GEMM_FLOPS`` plus the patch copy: ``PATCH_SECONDS`` per element for contiguous rows,
  ``STRIDED_SECONDS`` where a column stride makes it a gather, or the column phases' copy of the
  input band plus contiguous patches where :func:`.gemm.use_phases` takes them; nothing for a
  1x1 stride-1 convolution. Always applicable; the only path for inputs with NaN/Inf, because
  only a direct method keeps NaN inside the windows that touch it -- which is also why
  ``"auto"`` checks the input's finiteness (a full pass) only where another method would win.
* ``fft``: overlap-save FFT (:mod:`.fft`), cost ``~ (C + J) L log2 L`` for the transforms plus
  ``J C_g L`` for the spectral products, independent of kernel size and stride. Its rounding
  error scales with the energy of the whole band, not the pixels under each window, so where a
  few bright pixels dominate that energy (:func:`.fft.dynamic_range` above
  ``fft.FLOAT64_RANGE``) the transforms run in float64; ``"auto"`` measures that only when the
  FFT would win, and then re-chooses with the FFT's float64 cost (``FFT64_FACTOR``, more bands).
* ``separable``: every kernel rank 1 (:mod:`.separable`): an im2col GEMM along ``x`` with the
  distinct row filters, then banded-matrix GEMMs along ``y`` (``2 ((16 - 1) s_y + span)`` flops
  per output pixel instead of ``2 C_g kh kw``).

Measured crossover (``benchmarks/kernels.py --crossover``), stride 1, 2 threads, quiet machine:
C=1 J=16 1024^2 -- GEMM 0.045 s vs FFT 0.13 s at k=15, 0.090 s vs 0.113 s at k=21 (FFT wins
from k ~ 23; model: k ~ 25); C=16 J=32 512^2 -- GEMM 0.25 s vs FFT 0.35 s at k=15, 0.51 s vs
0.36 s at k=21 (measured k ~ 17; model: k ~ 20). Stride s divides the GEMM cost by s^2 but
not the FFT cost, which moves the crossover to larger kernels; the model accounts for it.

* ``polyphase``: strided layers (:mod:`.polyphase`): the input copied once into its
  ``s_y s_x`` phases (``STRIDED_SECONDS`` per element), then a stride-1 GEMM over
  ``C s_y s_x`` channels with ``L_y L_x`` taps, zero taps included (their multiply-adds are
  counted) and contiguous patch copies (``PATCH_SECONDS``).
* ``torch``: PyTorch's direct convolution (oneDNN, :mod:`.onednn`), only where torch is
  installed (never imported otherwise) and the bank has one group: ``2 J C kh kw`` flops per
  output pixel at ``TORCH_FLOPS`` plus ``TORCH_OUT_SECONDS`` per output element (its reorders
  from and to the blocked layout; ``TORCH_SPILL_SECONDS`` where the output outgrows the cache).
  It wins for strided large kernels with few channels (11x11/4 3 -> 24 on 1024^2, one core:
  torch 8.1 ms, GEMM 12.7 ms) and for stride-1 layers of many channels (32 -> 32 5x5 on
  256^2: 17.6 vs 26.3 ms; stride-1 calls on fewer than ``TORCH_MIN_CHANNELS`` input channels
  never take it, see :func:`_torch_wins`) and loses on large outputs (7x7 1 -> 16 on 2048^2: 286 vs
  112 ms), depthwise banks (25 vs 13 ms) and 1x1 (33 vs 11 ms). ``"auto"`` takes it only where
  it is :data:`TORCH_MARGIN` faster than the best NumPy path.

* ``numba``: a direct loop compiled by numba (:mod:`.numba_direct`), only where numba is
  installed (the ``fast`` extra; imported once it pays), NumPy input: ``J C_g kh kw``
  multiply-adds per output pixel at ``NUMBA_MACS`` (``NUMBA_STRIDED_MACS`` with a column stride)
  plus ``NUMBA_ROW_SECONDS`` per output row and tap; for ``NUMBA_MIN_GROUPS`` groups or more
  only. It wins for depthwise-like layers (one or a few filters per group), whose GEMMs are
  GEMVs after a large patch copy: depthwise 3x3 on
  64 x 256^2, one core, 3.0-3.4 ms against the GEMM's 6-13 ms and torch's 24-28 ms. It pads
  itself and adds the bias in its loop.

On CuPy arrays ``"auto"`` first takes the CUDA ``direct`` kernel (:mod:`.cuda`) for kernels up to
7x7 whose tile fits shared memory; larger kernels go through the cost model like on the CPU.
"""

from __future__ import annotations

import math
from types import ModuleType

from featuremap._typing import Array
from featuremap.engine.geometry import Pair, output_length
from featuremap.engine.kernels import (
    numba_direct,  # importing it never imports numba
    onednn,  # nor torch
)
from featuremap.engine.kernels.fft import transformed_rows
from featuremap.engine.kernels.gemm import phase_elements, use_phases
from featuremap.engine.kernels.polyphase import phase_kernel
from featuremap.engine.kernels.separable import COLUMN_BLOCK, ChannelPlan, plan_separable
from featuremap.engine.kernels.shapes import check_shapes

__all__ = ["Call", "choose", "choose_method", "estimate_seconds"]

#: One convolution call as the model sees it: ``(x_shape, weight_shape, stride, dilation,
#: groups)``, the input's shape padded.
Call = tuple[tuple[int, ...], tuple[int, ...], Pair, Pair, int]

# Fitted rates (seconds per unit) on the development machine, 2 threads; see module docstring.
GEMM_FLOPS = 280e9  # AVX-512 OpenBLAS on 2 threads of tiles (84e9 with OPENBLAS_CORETYPE=Haswell)
PATCH_SECONDS = 0.06e-9  # per patch element copied (in cache, 2 threads)
# per element gathered with a column stride > 1 (element by element: 3.3e9/s on one core against
# ~12e9/s for contiguous rows in cache); where .gemm.use_phases, only the column phases' copy of
# the input band is gathered and the patches are contiguous copies
STRIDED_SECONDS = 0.15e-9
GEMM_CALL_SECONDS = 5e-6  # per small matmul call (the separable column pass makes many)
FFT_SECONDS = 0.15e-9  # per point * log2(points) of one real 2-D transform
FFT_CALL_SECONDS = 20e-6  # fixed cost per filter (planning, allocation); dominates tiny blocks
PRODUCT_SECONDS = 1.0e-9  # per complex multiply-add of the spectral products
# float64 spectra (inputs of a large dynamic range, see .fft): per transformed row, relative to
# float32 -- scipy.fft rfft2 1024^2 1.9 ms vs 1.05 ms; complex128 products move twice the bytes.
FFT64_FACTOR = 2.0
# torch (oneDNN direct convolution), same 2-thread units: fitted on one core (11x11/4 3 -> 24
# 1024^2 8.1 ms, 8 x 227^2 3.5 ms, 7x7/2 3 -> 64 512^2 7.0 ms, 5x5 32 -> 32 256^2 16.4 ms;
# outputs of 134-268 MB: 4-5 ns per output element) and halved like the GEMM's constants
TORCH_FLOPS = 400e9
TORCH_OUT_SECONDS = 0.1e-9  # per output element, output within TORCH_CACHE_BYTES
TORCH_SPILL_SECONDS = 2e-9  # per output element beyond it
TORCH_CACHE_BYTES = 32 << 20
TORCH_CALL_SECONDS = 120e-6  # per call (its reorders of the weights, its threads' start)
# numba's direct loop (2-thread units, halved from one core: depthwise 3x3 64 x 256^2 3.0 ms,
# 1 -> 16 7x7 on 1024^2 ~30 ms; a column stride makes its loads gathers: 3x3/2 4.7 ms)
NUMBA_MACS = 60e9  # multiply-adds per second, stride 1 along x
NUMBA_STRIDED_MACS = 5e9  # with a column stride
NUMBA_ROW_SECONDS = 6e-9  # per output row and tap (slicing, the tap's bounds)
# grouped calls of this many groups only (learned depthwise layers, not banks on images)
NUMBA_MIN_GROUPS = 16
# outputs bounded by this are far from float32's overflow (3.4e38) in any algorithm (_keeps)
SAFE_MAGNITUDE = 1e30
# "auto" takes torch only where it is estimated this much faster (its rates vary more by shape)
TORCH_MARGIN = 0.8
# stride-1 calls only from this many input channels on (learned layers, not banks on images)
TORCH_MIN_CHANNELS = 16
# nor for kernels wider than this: there the FFT's cost does not grow with the kernel, and
# oneDNN has pathological large-kernel cases (C=1 J=8 31x31 1024^2: 31 s, PERFORMANCE.md)
TORCH_MAX_KERNEL = 15


def _gemm_seconds(
    n_pixels_out: int,
    n_filters: int,
    group_channels: int,
    channels: int,
    taps: int,
    copy_seconds: float = PATCH_SECONDS,
) -> float:
    flops = 2.0 * n_pixels_out * n_filters * group_channels * taps
    return flops / GEMM_FLOPS + n_pixels_out * channels * taps * copy_seconds


def _patch_seconds(
    n_images: int, out_shape: Pair, weight_shape: tuple[int, ...], stride: Pair, span: int
) -> float:
    """Seconds per patch element of :func:`.gemm.gemm_conv`, the column phases' copy included
    (spread over the patch elements); none for a 1x1 stride-1 convolution (no copy)."""
    kh, kw = weight_shape[-2:]
    if kh == kw == 1 and stride == (1, 1):
        return 0.0
    if stride[1] == 1:
        return PATCH_SECONDS
    if not use_phases(weight_shape, stride):
        return STRIDED_SECONDS
    pixels = n_images * out_shape[0] * out_shape[1]
    phase = n_images * phase_elements(out_shape, stride, span) * STRIDED_SECONDS
    return PATCH_SECONDS + phase / (pixels * kh * kw)


def estimate_seconds(
    method: str,
    x_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: Pair,
    dilation: Pair,
    groups: int,
    row_filters: int = 1,
    float64_spectra: bool = False,
) -> float:
    """Estimated seconds of one call; ``row_filters`` = distinct row filters per channel (separable);
    ``float64_spectra``: the FFT transforms in float64 (:func:`.fft.spectra_dtype`), which costs
    :data:`FFT64_FACTOR` times as much per transformed row, and more rows where the larger scratch
    splits the input into more overlap-save bands."""
    n_images = math.prod(x_shape[:-3])
    channels, height, width = x_shape[-3:]
    n_filters, group_channels, kh, kw = weight_shape
    out_h = output_length(height, kh, stride[0], dilation[0], 0, 0, axis="y")
    out_w = output_length(width, kw, stride[1], dilation[1], 0, 0, axis="x")
    if method == "gemm":
        span = dilation[0] * (kh - 1) + 1
        copy = _patch_seconds(n_images, (out_h, out_w), weight_shape, stride, span)
        return _gemm_seconds(
            n_images * out_h * out_w, n_filters, group_channels, channels, kh * kw, copy
        )
    if method == "fft":
        points = height * width
        transforms = n_images * (channels + n_filters) + n_filters * group_channels
        products = n_images * n_filters * group_channels * points / 2
        overhead = (n_filters + 1) * FFT_CALL_SECONDS
        seconds = (
            transforms * points * math.log2(max(points, 2)) * FFT_SECONDS
            + products * PRODUCT_SECONDS
        )
        if float64_spectra:
            shape = (n_images, *x_shape[-3:])
            single, double = (
                transformed_rows(shape, weight_shape, stride, dilation, size) for size in (4, 8)
            )
            seconds *= FFT64_FACTOR * double / single
        return seconds + overhead
    if method == "polyphase":
        (sy, sx), cell = stride, stride[0] * stride[1]
        lengths = (phase_kernel(kh, sy, dilation[0]), phase_kernel(kw, sx, dilation[1]))
        phase_size = (out_h + lengths[0] - 1) * (out_w + lengths[1] - 1)
        copy = n_images * channels * cell * phase_size * STRIDED_SECONDS
        return copy + _gemm_seconds(
            n_images * out_h * out_w,
            n_filters,
            group_channels * cell,
            channels * cell,
            lengths[0] * lengths[1],
        )
    if method == "torch":
        outputs = n_images * n_filters * out_h * out_w
        per_output = TORCH_OUT_SECONDS if outputs * 4 <= TORCH_CACHE_BYTES else TORCH_SPILL_SECONDS
        flops = 2.0 * outputs * group_channels * kh * kw
        return flops / TORCH_FLOPS + outputs * per_output + TORCH_CALL_SECONDS
    if method == "numba":
        row_taps = n_images * n_filters * out_h * group_channels * kh * kw
        rate = NUMBA_MACS if stride[1] == 1 else NUMBA_STRIDED_MACS
        return row_taps * out_w / rate + row_taps * NUMBA_ROW_SECONDS
    if method == "separable":
        rows = _gemm_seconds(n_images * height * out_w, row_filters, 1, 1, kw) * channels
        block_span = (COLUMN_BLOCK - 1) * stride[0] + dilation[0] * (kh - 1) + 1
        column_gemms = channels * n_filters // groups  # one banded GEMM per (channel, output) pair
        columns = column_gemms * (2.0 * n_images * out_h * out_w * block_span / GEMM_FLOPS)
        calls = column_gemms * n_images * math.ceil(out_h / COLUMN_BLOCK) * GEMM_CALL_SECONDS
        return rows + columns + calls
    raise ValueError(f"no cost model for method {method!r}")


def choose_method(
    x_shape: tuple[int, ...],
    weight: Array,
    stride: Pair,
    dilation: Pair,
    groups: int,
    finite: bool = True,
    float64_spectra: bool = False,
) -> str:
    """The fastest applicable method for this call: ``"gemm"``, ``"fft"``, ``"separable"``,
    ``"polyphase"`` (strided), (numba installed) ``"numba"`` or (torch installed) ``"torch"``.

    Parameters
    ----------
    x_shape : tuple of int
        ``(..., C, H, W)`` of the padded input.
    weight : array
        ``(J, C/groups, kh, kw)``; its values decide whether ``"separable"`` applies.
    stride, dilation : (int, int)
    groups : int
    finite : bool
        Whether the input holds no NaN/Inf; when False the answer is always ``"gemm"``.
    float64_spectra : bool
        Whether the input's dynamic range needs the FFT in float64 (:func:`.fft.spectra_dtype`,
        which :func:`conv2d_valid` asks when the FFT would otherwise win); the FFT then costs more.
    """
    check_shapes(tuple(x_shape), weight.shape, groups, spatial=2)
    return choose(tuple(x_shape), weight, stride, dilation, groups, finite, float64_spectra)[0]


def choose(
    x_shape: tuple[int, ...],
    weight: Array,
    stride: Pair,
    dilation: Pair,
    groups: int,
    finite: bool,
    float64_spectra: bool = False,
    on_cpu: bool = True,
) -> tuple[str, list[ChannelPlan] | None]:
    """``(method, separable plan or None)`` of the cheapest applicable method; ``"numba"`` and
    ``"torch"`` only ``on_cpu`` (NumPy input) and where :func:`_numba_wins`, :func:`_torch_wins`."""
    gemm = estimate_seconds("gemm", x_shape, weight.shape, stride, dilation, groups)
    if not finite:
        return "gemm", None
    fft = estimate_seconds(
        "fft", x_shape, weight.shape, stride, dilation, groups, float64_spectra=float64_spectra
    )
    costs = {"gemm": gemm, "fft": fft}
    # The SVD is only worth doing when even the best case (one row filter) could win.
    if estimate_seconds("separable", x_shape, weight.shape, stride, dilation, groups) < min(
        costs.values()
    ):
        plans = plan_separable(weight, groups)
        if plans is not None:
            row_filters = max(len(plan.rows) for plan in plans)
            costs["separable"] = estimate_seconds(
                "separable", x_shape, weight.shape, stride, dilation, groups, row_filters
            )
            if costs["separable"] < min(costs["gemm"], costs["fft"]):
                return "separable", plans
    if stride != (1, 1) and on_cpu:
        costs["polyphase"] = estimate_seconds(
            "polyphase", x_shape, weight.shape, stride, dilation, groups
        )
    best = min(costs, key=costs.__getitem__)
    call = (x_shape, weight.shape, stride, dilation, groups)
    if on_cpu and _numba_wins(call, costs[best]):
        return "numba", None
    if on_cpu and _torch_wins(call, costs[best]):
        return "torch", None
    return best, None


def _numba_wins(call: Call, best_seconds: float) -> bool:
    """Whether numba's direct loop applies (:data:`NUMBA_MIN_GROUPS` groups or more) and
    :func:`_pays` against ``best_seconds``, and loads.

    As with torch, which method runs decides the summation order, so where this path may run
    a result depends by an ulp or so on whether numba is installed and imported yet: grouped
    layers of many groups (learned depthwise layers) only, never a bank on the few channels of
    an image, whose results must not depend on it (a single 33x33 filter on 256^2 would be
    faster here than on the GEMM)."""
    if call[4] < NUMBA_MIN_GROUPS or not _pays("numba", numba_direct, 1.0, call, best_seconds):
        return False
    return numba_direct.usable()


def _torch_wins(call: Call, best_seconds: float) -> bool:
    """Whether torch's direct convolution applies well (one group, strided or with
    :data:`TORCH_MIN_CHANNELS` input channels, kernels up to :data:`TORCH_MAX_KERNEL`) and
    :func:`_pays` at :data:`TORCH_MARGIN` of ``best_seconds``.

    Which method runs decides the summation order, so where torch may run a result depends
    (by an ulp or so) on whether the process has imported torch yet. Stride-1 calls on few
    channels -- every classical bank and pixel feature, on one to a few image channels -- stay
    on the NumPy paths, which are near torch there, so their results never depend on it. A
    learned stride-1 layer of many channels (32 -> 32 5x5 on 256^2, one core of the
    development machine, AVX-512: torch 17.6 ms, the GEMM 26.3 ms at 80 % of OpenBLAS's
    SGEMM peak) runs where strided layers do."""
    _, weight_shape, stride, _, groups = call
    kh, kw = weight_shape[-2:]
    few_channels = weight_shape[1] < TORCH_MIN_CHANNELS
    if groups != 1 or (stride == (1, 1) and few_channels) or max(kh, kw) > TORCH_MAX_KERNEL:
        return False
    return _pays("torch", onednn, TORCH_MARGIN, call, best_seconds)


def _pays(
    method: str,
    backend: ModuleType,
    margin: float,
    call: Call,
    best_seconds: float,
) -> bool:
    """Whether the optional ``backend`` of ``method`` is installed, estimated ``margin`` times
    ``best_seconds`` or faster for ``call``, and worth its import (its ``worth_importing``: :class:`._optional.OptionalModule`)."""
    if not backend.available():
        return False
    seconds = estimate_seconds(method, *call)
    if seconds >= margin * best_seconds:
        return False
    return bool(backend.worth_importing(best_seconds - seconds))
