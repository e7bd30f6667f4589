"""FFT convolution for large kernels: overlap-save bands along ``y``, conjugate kernel spectra.

Cross-correlation is ``irfft2(X * conj(K))`` where ``K`` is the spectrum of the (dilated,
zero-stuffed) kernel padded to the FFT size. With an FFT length ``L >= band height`` the valid
outputs ``0 .. band - span`` never wrap around, so the FFT covers the input band only (not input
+ kernel as a linear convolution would). Each input channel is transformed once per band; each
filter's spectrum is multiplied with it, summed over the filter's group channels, and
transformed back. Strided outputs are computed at stride 1 and decimated (the cost model in
:mod:`.conv` charges for that).

Accuracy: the rounding error of an FFT is spread evenly over all outputs of a transform and
scales with the energy (L2 norm) of the whole band, while a direct method's error at an output
scales with the values in that output's window. So a few bright pixels used to swamp the
response everywhere else. Two measures keep the FFT's error near that of a direct float32
convolution (torch's ``conv2d``):

* every image channel is centred before its transform (its mean ``m`` subtracted, and
  ``m * sum(weight)`` put back into each filter's DC bin), which takes the offset of camera-like
  data (16-bit background ~100) out of the error;
* where :func:`dynamic_range` -- the largest ``RMS(x - m) / median tile RMS`` over the image
  channels, tiles of the kernel's span: how far the energy of the band exceeds that of a typical
  window -- is above :data:`FLOAT64_RANGE` (1.5), the transforms run in float64
  (:func:`spectra_dtype`). The float32 error is at most ~6.5x ``dynamic_range`` times torch's in
  the cases measured (LoG 33x33 the worst; Gabor ~1.5-2x, Gaussian ~1-1.5x), so float32 stays within
  ~10x of torch; statistically uniform data (noise, textures, sparse dots) has a range of about 1
  or less, photographs 0.1-1.3, 16-bit camera data 0.1, so they keep float32.

Measured with ``tests/engine/kernels/test_fft.py``'s cases: error = max ``|result - float64
reference|`` over the outputs whose window misses the bright object, as a multiple of torch
float32's error over the same outputs (torch: 1.6e-7 and 3.4e-6):

===================================================  =======  ==========  ==========  =========
case                                                 range    before      float32,    now (fft;
                                                                          centred     auto)
===================================================  =======  ==========  ==========  =========
Gabor 31x31, 32 filters; uniform(0,1) 384^2 with a   4.5e4    7e4         7e4         0.024;
10x10 patch of 1e6                                                                    0.69 GEMM
LoG sigma 4 (33x33); 16-bit 100 +- 10 noise 384^2    16.5     61          61          0.0035;
with one disk (r 6) of 60000                                                          0.0035
same, disk of 3000 (float32 kept)                    0.8      2.5         2.8-5.2     2.8-5.2
uniform, N(0,1), ReLU(N(0,1)), 5 % sparse, 16-bit    0.1-1.0  0.1-0.35    0.05-0.83   same
without object, 1/f "photograph" (Gabor 31)
===================================================  =======  ==========  ==========  =========

Of 24 ``skimage.data`` images, only ``colorwheel`` (saturated colours on black: 1.7 with 31x31
tiles, 2.3 with 7x7) and ``hubble_deep_field`` (stars on a black sky: 2.2 with 7x7 tiles, 1.49
with 31x31) exceed the threshold.

Cost (C=1 J=8 k=31 1024^2 + 30 padding, stride 1, 2 threads, fastest of 15 interleaved runs;
this machine's timings drift by up to 30 % between runs): 0.050 s before, 0.051 s centred float32,
0.052 s with the range test (~1.5 ms: a few passes over each channel), 0.109 s with float64
spectra (2.1-2.2x: transforms ~1.8x, complex128 products, more bands within the scratch budget).
``method="auto"`` computes the range only when the FFT would win, and then re-chooses with the
float64 cost (:data:`.cost.FFT64_FACTOR`, :func:`transformed_rows`): for one filter on 256^2
(many short float64 bands) GEMM wins; for the 1024^2 case above with a bright patch the model
picks GEMM (0.14 s) over float64 FFT (0.10 s) -- a close call, both accurate.

Memory: bands of output rows and chunks of filters are sized so the spectra and the inverse
transforms stay within :func:`scratch_budget` (half of input + output bytes), so that the peak
extra memory of a call, output included, stays below twice input + output.
"""

from __future__ import annotations

import math
from typing import Any

import numpy

from featuremap._typing import Array
from featuremap.engine.geometry import ceil_div
from featuremap.engine.kernels._namespace import array_namespace, fft_module
from featuremap.engine.kernels._threads import blas_threads

__all__ = [
    "FLOAT64_RANGE",
    "dynamic_range",
    "fft_conv",
    "fft_shape",
    "scratch_budget",
    "spectra_dtype",
    "transformed_rows",
]

#: :func:`dynamic_range` above which the spectra are computed in float64 (see the module docstring).
FLOAT64_RANGE = 1.5


def scratch_budget(input_bytes: int, output_bytes: int) -> int:
    """Bytes of FFT scratch allowed for one call."""
    return (input_bytes + output_bytes) // 2


def fft_shape(fft: Any, band_height: int, width: int) -> tuple[int, int]:
    """Fast real-FFT sizes covering a band of ``band_height`` input rows of ``width`` pixels."""
    return fft.next_fast_len(band_height, real=True), fft.next_fast_len(width, real=True)


def dynamic_range(x: Array, window: tuple[int, int] = (1, 1)) -> float:
    """Largest ``RMS(x - mean) / typical`` over the image channels of ``x (N, C, H, W)``.

    ``typical`` is the median over ``window``-sized tiles (the kernel's span) of the tile's RMS.
    The FFT's rounding error at every output scales with the centred RMS of the whole band, a
    direct method's with the magnitudes inside that output's window, so this says how much worse
    than a direct float32 method the float32 FFT can be. About 1 or less for any statistically
    uniform data (noise, texture, sparse dots; less with an offset: 0.1 for 16-bit camera data
    of 100 +- 10), 0.1-1.3 for photographs, large where a few bright objects hold most of the
    energy. ``inf`` where the median tile is all zero but the channel is not.
    """
    xp = array_namespace(x)
    height, width = x.shape[-2:]
    tile_y, tile_x = max(1, min(window[0], height)), max(1, min(window[1], width))
    rows, cols = height // tile_y, width // tile_x
    ratio = 0.0
    for plane in x.reshape((-1, height, width)):  # one plane of scratch at a time
        peak = max(float(xp.max(plane)), -float(xp.min(plane)))
        if not 0 < peak < math.inf:
            continue  # all zero (or not finite, which the FFT refuses anyway)
        scaled = plane / plane.dtype.type(peak)  # in [-1, 1]: the squares cannot overflow
        mean = float(xp.mean(scaled, dtype=xp.float64))
        squares = xp.square(scaled, out=scaled)
        centred = math.sqrt(max(float(xp.mean(squares, dtype=xp.float64)) - mean * mean, 0.0))
        tiles = squares[: rows * tile_y, : cols * tile_x].reshape((rows, tile_y, cols, tile_x))
        typical = math.sqrt(float(xp.median(xp.mean(tiles, axis=(1, 3)))))
        del scaled, squares, tiles
        if centred > 0:
            ratio = max(ratio, centred / typical if typical > 0 else math.inf)
    return ratio


def spectra_dtype(x: Array, window: tuple[int, int] = (1, 1)) -> str:
    """``"float64"`` where :func:`dynamic_range` exceeds :data:`FLOAT64_RANGE`, else ``"float32"``."""
    return "float64" if dynamic_range(x, window) > FLOAT64_RANGE else "float32"


def _band_bytes(
    n_images: int,
    channels: int,
    group_channels: int,
    chunk: int,
    shape: tuple[int, int],
    real_bytes: int,
) -> int:
    """Scratch of one band: the centred padded input, input spectra, one chunk of kernel spectra,
    products and inverses (the padded input is freed once transformed)."""
    spectrum = shape[0] * (shape[1] // 2 + 1) * 2 * real_bytes
    real = shape[0] * shape[1] * real_bytes
    held = spectrum * (n_images * channels + chunk * group_channels)
    return held + max(n_images * channels * real, n_images * chunk * (spectrum + real))


def _plan(
    x_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: int,
    span: int,
    out_rows: int,
    budget: int,
    fft: Any,
    real_bytes: int = 4,
) -> tuple[int, int]:
    """Choose output rows per band and filters per chunk within ``budget`` bytes."""
    n_images, channels, _, width = x_shape
    n_filters, group_channels = weight_shape[:2]
    band = out_rows
    while True:
        shape = fft_shape(fft, (band - 1) * stride + span, width)
        if (
            band == 1
            or _band_bytes(n_images, channels, group_channels, 1, shape, real_bytes) <= budget
        ):
            break
        band = ceil_div(band, 2)
    chunk = n_filters
    while (
        chunk > 1
        and _band_bytes(n_images, channels, group_channels, chunk, shape, real_bytes) > budget
    ):
        chunk = ceil_div(chunk, 2)
    return band, chunk


def transformed_rows(
    x_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    real_bytes: int,
    fft: Any = None,
) -> int:
    """FFT rows per input channel that :func:`fft_conv` transforms over all its overlap-save bands
    of float32 ``x (N, C, H, W)``: about ``H`` for one band, more where the scratch budget splits
    the input. ``real_bytes`` is 4 (float32 spectra) or 8 (float64); ``fft`` gives the transform
    sizes (``next_fast_len``), by default :mod:`scipy.fft`."""
    if fft is None:
        fft = fft_module(numpy)
    n_images, channels, height, width = x_shape
    n_filters, _, kh, kw = weight_shape
    span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    out_rows = (height - span[0]) // stride[0] + 1
    out_cols = (width - span[1]) // stride[1] + 1
    budget = scratch_budget(
        4 * n_images * channels * height * width, 4 * n_images * n_filters * out_rows * out_cols
    )
    band, _ = _plan(x_shape, weight_shape, stride[0], span[0], out_rows, budget, fft, real_bytes)
    return sum(
        fft_shape(fft, (min(r0 + band, out_rows) - r0 - 1) * stride[0] + span[0], width)[0]
        for r0 in range(0, out_rows, band)
    )


def _offsets(means: Array, weight: Array, groups: int) -> Array:
    """``(N, J)`` float64: what the channel means contribute to each filter's output."""
    xp = array_namespace(weight)
    n_filters, group_channels = weight.shape[:2]
    sums = xp.sum(weight, axis=(-2, -1), dtype=xp.float64).reshape(
        (groups, n_filters // groups, group_channels)
    )
    per_group = means.reshape((means.shape[0], groups, group_channels))
    return xp.einsum("ngc,gfc->ngf", per_group, sums).reshape((means.shape[0], n_filters))


def fft_conv(
    x: Array,
    weight: Array,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    out: Array,
    precision: str | None = None,
) -> Any:
    """Valid cross-correlation of finite ``x (N, C, H, W)`` by FFT, written into ``out``.

    ``precision`` (``"float32"`` or ``"float64"``) is the dtype of the transforms; by default
    :func:`spectra_dtype` of ``x``.
    """
    if precision not in (None, "float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    xp = array_namespace(x)
    fft = fft_module(xp)
    # As many FFT threads as a GEMM would use, so that the method choice does not depend on threading.
    workers = {"workers": blas_threads()} if xp.__name__ == "numpy" else {}
    n_images, channels, _, width = x.shape
    n_filters, group_channels, kh, kw = weight.shape
    out_rows, out_cols = out.shape[-2:]
    (sy, sx), (dy, dx) = stride, dilation
    span = (dy * (kh - 1) + 1, dx * (kw - 1) + 1)
    real = xp.dtype(precision or spectra_dtype(x, span))
    dilated = xp.zeros((n_filters, group_channels, *span), dtype=real)
    dilated[:, :, ::dy, ::dx] = weight
    means = xp.mean(
        x, axis=(-2, -1), dtype=xp.float64
    )  # (N, C): centred transforms, see the docstring
    offsets = _offsets(means, weight, groups)  # (N, J) float64
    means = means.astype(real)[:, :, None, None]
    filters_per_group = n_filters // groups
    budget = scratch_budget(x.nbytes, out.nbytes)
    band, chunk = _plan(x.shape, weight.shape, sy, span[0], out_rows, budget, fft, real.itemsize)
    col_stop = (out_cols - 1) * sx + 1
    kept: tuple[tuple[int, int], Any] | None = None  # (shape, spectra) of an only filter chunk
    for r0 in range(0, out_rows, band):
        r1 = min(r0 + band, out_rows)
        in_rows = slice(r0 * sy, (r1 - 1) * sy + span[0])
        height = in_rows.stop - in_rows.start
        shape = fft_shape(fft, height, width)
        padded = xp.zeros((n_images, channels, *shape), dtype=real)
        xp.subtract(x[:, :, in_rows], means, out=padded[:, :, :height, :width])
        x_spectra = fft.rfft2(padded, overwrite_x=True, **workers)
        del padded
        for j0 in range(0, n_filters, chunk):
            j1 = min(j0 + chunk, n_filters)
            if kept is not None and kept[0] == shape:
                k_spectra = kept[1]  # bands of equal height share the kernel spectra
            else:
                k_spectra = fft.rfft2(dilated[j0:j1], s=shape, **workers)
                xp.conj(k_spectra, out=k_spectra)
                if chunk == n_filters:  # within the budget: _band_bytes counts one chunk's spectra
                    kept = (shape, k_spectra)
            products = xp.zeros((n_images, j1 - j0, *x_spectra.shape[-2:]), dtype=x_spectra.dtype)
            for j in range(j0, j1):
                first = (j // filters_per_group) * group_channels
                for c in range(group_channels):
                    products[:, j - j0] += x_spectra[:, first + c] * k_spectra[j - j0, c]
            # the means' contribution, constant over the band, goes into the DC bin (no extra pass)
            products[:, :, 0, 0] += offsets[:, j0:j1] * (shape[0] * shape[1])
            valid = fft.irfft2(products, s=shape, **workers)
            out[:, j0:j1, r0:r1] = valid[:, :, : (r1 - r0 - 1) * sy + 1 : sy, :col_stop:sx]
        del x_spectra
    return out
