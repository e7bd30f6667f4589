"""``conv2d_valid``: PyTorch ``conv2d(padding=0)`` on already padded NumPy/CuPy arrays.

Five CPU paths give the same result to float32 rounding; ``method="auto"`` takes the cheapest by
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
from featuremap._validation import parse_choice
from featuremap._vocabulary import CONV_METHODS, ConvMethod
from featuremap.engine.geometry import Pair, output_length
from featuremap.engine.kernels import (
    cuda,  # importing it never imports CuPy
    numba_direct,  # nor numba
    onednn,
)
from featuremap.engine.kernels._namespace import array_namespace, finite_sum, sum_of_squares
from featuremap.engine.kernels.fft import fft_conv, spectra_dtype, transformed_rows
from featuremap.engine.kernels.gemm import gemm_conv, phase_elements, use_phases
from featuremap.engine.kernels.padding import pad
from featuremap.engine.kernels.polyphase import phase_kernel, polyphase_conv
from featuremap.engine.kernels.separable import (
    COLUMN_BLOCK,
    ChannelPlan,
    plan_separable,
    separable_conv,
)
from featuremap.engine.kernels.shapes import check_shapes
from featuremap.errors import InputError

__all__ = ["choose_method", "conv2d_valid", "estimate_seconds"]

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
    return _choose(tuple(x_shape), weight, stride, dilation, groups, finite, float64_spectra)[0]


def _choose(
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
    if on_cpu and _numba_wins(x_shape, weight.shape, stride, dilation, groups, costs[best]):
        return "numba", None
    if on_cpu and _torch_wins(x_shape, weight.shape, stride, dilation, groups, costs[best]):
        return "torch", None
    return best, None


def _numba_wins(
    x_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: Pair,
    dilation: Pair,
    groups: int,
    best_seconds: float,
) -> bool:
    """Whether numba's direct loop applies (:data:`NUMBA_MIN_GROUPS` groups or more), is
    installed, estimated faster than ``best_seconds`` and worth numba's import
    (:func:`.numba_direct.worth_importing`), and loads.

    As with torch, which method runs decides the summation order, so where this path may run
    a result depends by an ulp or so on whether numba is installed and imported yet: grouped
    layers of many groups (learned depthwise layers) only, never a bank on the few channels of
    an image, whose results must not depend on it (a single 33x33 filter on 256^2 would be
    faster here than on the GEMM)."""
    if groups < NUMBA_MIN_GROUPS or not numba_direct.available():
        return False
    seconds = estimate_seconds("numba", x_shape, weight_shape, stride, dilation, groups)
    if seconds >= best_seconds or not numba_direct.worth_importing(best_seconds - seconds):
        return False
    return numba_direct.usable()


def _torch_wins(
    x_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: Pair,
    dilation: Pair,
    groups: int,
    best_seconds: float,
) -> bool:
    """Whether torch's direct convolution is installed, applies well (one group, strided or
    with :data:`TORCH_MIN_CHANNELS` input channels, kernels up to :data:`TORCH_MAX_KERNEL`)
    and is :data:`TORCH_MARGIN` faster, and the import pays
    (:func:`.onednn.worth_importing`).

    Which method runs decides the summation order, so where torch may run a result depends
    (by an ulp or so) on whether the process has imported torch yet. Stride-1 calls on few
    channels -- every classical bank and pixel feature, on one to a few image channels -- stay
    on the NumPy paths, which are near torch there, so their results never depend on it. A
    learned stride-1 layer of many channels (32 -> 32 5x5 on 256^2, one core of the
    development machine, AVX-512: torch 17.6 ms, the GEMM 26.3 ms at 80 % of OpenBLAS's
    SGEMM peak) runs where strided layers do."""
    kh, kw = weight_shape[-2:]
    few_channels = weight_shape[1] < TORCH_MIN_CHANNELS
    if groups != 1 or (stride == (1, 1) and few_channels) or max(kh, kw) > TORCH_MAX_KERNEL:
        return False
    if not onednn.available():
        return False
    seconds = estimate_seconds("torch", x_shape, weight_shape, stride, dilation, groups)
    if seconds >= TORCH_MARGIN * best_seconds:
        return False
    return onednn.worth_importing(best_seconds - seconds)


def _keeps(images: Array, weight: Array, out: Array) -> bool:
    """Whether ``out``, computed by torch or the phases (which may carry a NaN/Inf beyond the
    windows that hold it), is right: the input is bounded, where it is the smaller array to
    check, or else the output is finite (:func:`._namespace.finite_sum`).

    A finite input bounds every output by ``|x|_max sum|w_j|`` (``|x|_max <= sqrt(sum x^2)``), and
    where that bound is far from float32's range no algorithm's intermediates overflow either:
    7x7/2 3 -> 64 on 512^2 checks 0.8M input values instead of 4.2M output values (1 ms of its
    8 ms on one core)."""
    if math.prod(images.shape) < math.prod(out.shape):
        xp = array_namespace(weight)
        gain = float(xp.abs(weight).sum(axis=(1, 2, 3)).max())
        if math.sqrt(sum_of_squares(images)) * gain < SAFE_MAGNITUDE:  # False for NaN
            return True
    return finite_sum(out)


def _finite(x: Array) -> bool:
    return bool(array_namespace(x).isfinite(x).all())


def conv2d_valid(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    *,
    stride: Pair = (1, 1),
    dilation: Pair = (1, 1),
    groups: int = 1,
    method: ConvMethod = "auto",
    zero_padding: tuple[Pair, Pair] = ((0, 0), (0, 0)),
) -> Array:
    """Cross-correlation of an already padded input, exactly ``torch.nn.functional.conv2d(padding=0)``
    -- or of ``x`` with ``zero_padding`` around it, as torch's ``padding``.

    Parameters
    ----------
    x : array, float32, shape (..., C, H, W)
        Any number of leading batch axes; NumPy or CuPy. Other dtypes are converted to float32.
    weight : array, shape (J, C/groups, kh, kw)
    bias : array of shape (J,), optional
    stride, dilation : (int, int)
        ``(y, x)``, parsed already (:class:`~featuremap.engine.geometry.LayerGeometry`): the kernels
        never parse a layer's parameters again.
    groups : int
    zero_padding : ((top, bottom), (left, right))
        Zeros around ``x``. Where oneDNN runs the call and the padding is symmetric, torch adds
        them inside its own call (no padded copy of the input: a tenth of an 11x11 stride-4
        layer's time); numba's loop skips them; every other method gets a padded copy first.
    method : {"auto", "gemm", "fft", "separable", "direct", "torch", "polyphase", "numba"}
        ``"auto"`` picks the fastest (:func:`choose_method`; on CuPy arrays the CUDA
        ``"direct"`` kernel for kernels up to 7x7). ``"numba"`` (NumPy input, numba installed)
        is exact for NaN/Inf like the GEMM. ``"torch"`` (NumPy input, torch installed)
        and ``"polyphase"`` fall back to the GEMM where their output is not all finite. Forcing ``"fft"`` or
        ``"separable"`` on an input with NaN/Inf, or ``"separable"`` on a bank that is not rank 1,
        raises ``ValueError``.

    Returns
    -------
    array, float32, shape (..., J, H_out, W_out)
        ``H_out = (H - d_y (kh - 1) - 1) // s_y + 1``, likewise ``W_out``.
    """
    method = parse_choice("method", method, CONV_METHODS)
    xp = array_namespace(x)
    x = xp.asarray(x, dtype=xp.float32)
    weight = xp.asarray(weight, dtype=xp.float32)
    check_shapes(x.shape, weight.shape, groups, spatial=2)
    n_filters, _, kh, kw = weight.shape
    (top, bottom), (left, right) = zero_padding
    out_h = output_length(x.shape[-2], kh, stride[0], dilation[0], top, bottom, axis="y")
    out_w = output_length(x.shape[-1], kw, stride[1], dilation[1], left, right, axis="x")
    if bias is not None:
        bias = xp.asarray(bias, dtype=xp.float32)
        if bias.shape != (n_filters,):
            raise InputError(
                f"bias must have shape ({n_filters},) to match the weight, got shape {bias.shape}"
            )
    padded = any(zero_padding[0]) or any(zero_padding[1])
    if _use_direct(method, xp, (kh, kw), stride, dilation):
        # the CUDA direct kernel is exact for NaN/Inf too: no finiteness check, no device sync
        x = pad(x, zero_padding, "zeros") if padded else x
        return cuda.direct_conv2d(x, weight, bias, stride=stride, dilation=dilation, groups=groups)
    batch = x.shape[:-3]
    images = x.reshape((-1, *x.shape[-3:]))
    shape = (*images.shape[:2], images.shape[2] + top + bottom, images.shape[3] + left + right)
    chosen, plans = _method_for(method, images, weight, stride, dilation, groups, shape)
    # numba's loop skips the padding; torch pads symmetrically inside its call; everything
    # else computes on a padded copy
    torch_pads = padded and chosen == "torch" and (top, left) == (bottom, right)
    if padded and not torch_pads and chosen != "numba":
        images = pad(images, zero_padding, "zeros")
    precision = None  # of the FFT: fft_conv decides where it was forced
    if method == "auto" and chosen == "fft":
        span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
        precision = spectra_dtype(images, span)
        if precision == "float64":  # the FFT costs more: another method may now be cheaper
            chosen, plans = _choose(  # the input is finite: the FFT was chosen
                images.shape,
                weight,
                stride,
                dilation,
                groups,
                True,
                float64_spectra=True,
                on_cpu=xp.__name__ == "numpy",
            )
    out_shape = (images.shape[0], n_filters, out_h, out_w)
    if chosen == "torch":
        padding = (top, left) if torch_pads else (0, 0)
        out = onednn.torch_conv(images, weight, stride, dilation, groups, padding)
    else:
        out = xp.empty(out_shape, dtype=xp.float32)
    if chosen == "polyphase":
        polyphase_conv(images, weight, stride, dilation, groups, out)
    if chosen == "numba":  # the bias is added in its loop
        numba_direct.numba_conv(images, weight, bias, stride, dilation, groups, (top, left), out)
        return out.reshape(batch + out.shape[1:])
    if chosen in ("torch", "polyphase") and not _keeps(images, weight, out):
        chosen = "gemm"  # NaN/Inf (or overflow): the exact GEMM decides
        images = pad(images, zero_padding, "zeros") if torch_pads else images
    if chosen == "gemm":
        gemm_conv(images, weight, stride, dilation, groups, out)
    elif chosen == "fft":
        fft_conv(images, weight, stride, dilation, groups, out, precision)
    elif chosen == "separable":
        assert plans is not None  # the separable method always comes with its plan
        separable_conv(images, plans, stride, dilation, out)
    if bias is not None:
        out += bias[:, None, None]
    return out.reshape(batch + out.shape[1:])


def _use_direct(method: str, xp: ModuleType, kernel: Pair, stride: Pair, dilation: Pair) -> bool:
    """The CUDA direct kernel: forced, or chosen for small kernels on CuPy arrays."""
    on_gpu = xp.__name__ != "numpy"
    if method == "direct" and not on_gpu:
        raise InputError(
            "method 'direct' needs a CuPy array; use 'auto', 'gemm', 'fft' or 'separable' for NumPy input"
        )
    return method == "direct" or (
        method == "auto" and on_gpu and cuda.supports(kernel, stride, dilation)
    )


def _method_for(
    method: str,
    images: Array,
    weight: Array,
    stride: Pair,
    dilation: Pair,
    groups: int,
    shape: tuple[int, ...],
) -> tuple[str, list[ChannelPlan] | None]:
    """Resolve ``method`` to ``(name, separable plan)`` for ``images`` padded to ``shape``,
    refusing forced methods that cannot apply (zero padding changes neither finiteness nor rank).

    The GEMM and numba's direct loop are exact for NaN/Inf, so only the choice or the forcing
    of another method needs the finiteness check (a full pass over the input); ``"auto"`` then
    falls back to the GEMM.
    """
    if method == "auto":
        on_cpu = array_namespace(images).__name__ == "numpy"
        chosen, plans = _choose(shape, weight, stride, dilation, groups, finite=True, on_cpu=on_cpu)
        # torch's and the phases' outputs are checked instead (conv2d_valid): one pass over
        # a smaller array
        if chosen not in ("gemm", "numba", "torch", "polyphase") and not _finite(images):
            return "gemm", None
        return chosen, plans
    if method == "torch":
        if array_namespace(images).__name__ != "numpy":
            raise InputError("method 'torch' needs a NumPy array; use 'auto' for CuPy input")
        if not onednn.available():
            raise InputError(
                "method 'torch' needs PyTorch (pip install torch); use 'auto' or 'gemm'"
            )
        return method, None
    if method == "polyphase":
        return method, None  # its output is checked (conv2d_valid)
    if method == "numba":  # exact for NaN/Inf like the GEMM
        if array_namespace(images).__name__ != "numpy":
            raise InputError("method 'numba' needs a NumPy array; use 'auto' for CuPy input")
        if not numba_direct.usable():
            raise InputError(
                "method 'numba' needs numba (pip install 'featuremap[fast]'); use 'auto' or 'gemm'"
            )
        return method, None
    if method != "gemm" and not _finite(images):
        raise ValueError(
            f"method {method!r} cannot be used on an input with NaN or Inf (it would spread them "
            "beyond the windows that touch them); use method 'gemm' or 'auto'"
        )
    if method == "separable":
        plans = plan_separable(weight, groups)
        if plans is None:
            raise ValueError(
                "method 'separable' needs every kernel of the bank to be rank 1 (an outer product "
                "of a column and a row filter); use method 'gemm', 'fft' or 'auto'"
            )
        return method, plans
    return method, None
