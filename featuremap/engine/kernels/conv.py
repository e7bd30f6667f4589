"""``conv2d_valid``: PyTorch ``conv2d(padding=0)`` on already padded NumPy/CuPy arrays.

Seven paths give the same result to float32 rounding -- tiled im2col + BLAS (:mod:`.gemm`),
overlap-save FFT (:mod:`.fft`), separable passes for rank-1 banks (:mod:`.separable`), the
strided phases (:mod:`.polyphase`), numba's direct loop for depthwise layers
(:mod:`.numba_direct`), oneDNN through torch (:mod:`.onednn`) and on CuPy arrays the CUDA direct
kernel (:mod:`.cuda`); ``method="auto"`` takes the cheapest by the time model of :mod:`.cost`.

NaN/Inf: the GEMM and the direct loops keep a NaN inside the windows that touch it, as PyTorch
does; the FFT and separable paths would spread it, so ``"auto"`` checks the input's finiteness
(a full pass) only where one of them would win, and falls back to the GEMM. torch's and the
phases' outputs are checked instead (:func:`_keeps`: the smaller of input and output).
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
    onednn,  # nor torch
)
from featuremap.engine.kernels._namespace import array_namespace, finite_sum, sum_of_squares
from featuremap.engine.kernels.cost import SAFE_MAGNITUDE, choose, choose_method, estimate_seconds
from featuremap.engine.kernels.fft import fft_conv, spectra_dtype
from featuremap.engine.kernels.gemm import gemm_conv
from featuremap.engine.kernels.padding import pad
from featuremap.engine.kernels.polyphase import polyphase_conv
from featuremap.engine.kernels.separable import ChannelPlan, plan_separable, separable_conv
from featuremap.engine.kernels.shapes import check_shapes
from featuremap.errors import InputError

__all__ = ["choose_method", "conv2d_valid", "estimate_seconds"]


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
    if padded and not (torch_pads or chosen == "numba"):
        images = pad(images, zero_padding, "zeros")
    precision = None  # of the FFT: fft_conv decides where it was forced
    if method == "auto" and chosen == "fft":
        span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
        precision = spectra_dtype(images, span)
        if precision == "float64":  # the FFT costs more: another method may now be cheaper
            chosen, plans = choose(  # the input is finite: the FFT was chosen
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
    if chosen == "numba":  # its loop starts each row from the bias
        numba_direct.numba_conv(images, weight, bias, stride, dilation, groups, (top, left), out)
        bias = None
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


#: The optional CPU backends a forced method needs, and what installs each.
_OPTIONAL = {
    "torch": (onednn, "PyTorch (pip install torch)"),
    "numba": (numba_direct, "numba (pip install 'featuremap[fast]')"),
}


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
        chosen, plans = choose(shape, weight, stride, dilation, groups, finite=True, on_cpu=on_cpu)
        # torch's and the phases' outputs are checked instead (conv2d_valid): one pass over
        # a smaller array
        if chosen not in ("gemm", "numba", "torch", "polyphase") and not _finite(images):
            return "gemm", None
        return chosen, plans
    if method in _OPTIONAL:  # torch's output is checked (conv2d_valid); numba's loop is exact
        backend, needs = _OPTIONAL[method]
        if array_namespace(images).__name__ != "numpy":
            raise InputError(f"method {method!r} needs a NumPy array; use 'auto' for CuPy input")
        if not backend.usable():
            raise InputError(f"method {method!r} needs {needs}; use 'auto' or 'gemm'")
        return method, None
    if method == "polyphase":
        return method, None  # its output is checked (conv2d_valid)
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
