"""FFT convolution for large kernels: overlap-save bands along ``y``, conjugate kernel spectra.

Cross-correlation is ``irfft2(X * conj(K))`` where ``K`` is the spectrum of the (dilated,
zero-stuffed) kernel padded to the FFT size. With an FFT length ``L >= band height`` the valid
outputs ``0 .. band - span`` never wrap around, so the FFT covers the input band only (not input
+ kernel as a linear convolution would). Each input channel is transformed once per band; each
filter's spectrum is multiplied with it, summed over the filter's group channels, and
transformed back. Strided outputs are computed at stride 1 and decimated (the cost model in
:mod:`.conv` charges for that).

Memory: bands of output rows and chunks of filters are sized so the spectra and the inverse
transforms stay within :func:`scratch_budget` (half of input + output bytes), so that the peak
extra memory of a call, output included, stays below twice input + output.
"""

from __future__ import annotations

from typing import Any

from featuremap._kernels._namespace import array_namespace, fft_module
from featuremap._kernels._threads import blas_threads
from featuremap.geometry import ceil_div

__all__ = ["fft_conv", "fft_shape", "scratch_budget"]

_COMPLEX_BYTES = 8


def scratch_budget(input_bytes: int, output_bytes: int) -> int:
    """Bytes of FFT scratch allowed for one call."""
    return (input_bytes + output_bytes) // 2


def fft_shape(fft: Any, band_height: int, width: int) -> tuple[int, int]:
    """Fast real-FFT sizes covering a band of ``band_height`` input rows of ``width`` pixels."""
    return fft.next_fast_len(band_height, real=True), fft.next_fast_len(width, real=True)


def _band_bytes(n_images: int, channels: int, group_channels: int, chunk: int, shape: tuple[int, int]) -> int:
    """Scratch of one band: input spectra, one chunk of kernel spectra, products and inverses."""
    spectrum = shape[0] * (shape[1] // 2 + 1) * _COMPLEX_BYTES
    inverse = shape[0] * shape[1] * 4
    return spectrum * (n_images * channels + chunk * group_channels + n_images * chunk) + n_images * chunk * inverse


def _plan(
    x_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: int,
    span: int,
    out_rows: int,
    budget: int,
    fft: Any,
) -> tuple[int, int]:
    """Choose output rows per band and filters per chunk within ``budget`` bytes."""
    n_images, channels, _, width = x_shape
    n_filters, group_channels = weight_shape[:2]
    band = out_rows
    while True:
        shape = fft_shape(fft, (band - 1) * stride + span, width)
        if band == 1 or _band_bytes(n_images, channels, group_channels, 1, shape) <= budget:
            break
        band = ceil_div(band, 2)
    chunk = n_filters
    while chunk > 1 and _band_bytes(n_images, channels, group_channels, chunk, shape) > budget:
        chunk = ceil_div(chunk, 2)
    return band, chunk


def fft_conv(x: Any, weight: Any, stride: tuple[int, int], dilation: tuple[int, int], groups: int, out: Any) -> Any:
    """Valid cross-correlation of finite ``x (N, C, H, W)`` by FFT, written into ``out``."""
    xp = array_namespace(x)
    fft = fft_module(xp)
    # As many FFT threads as a GEMM would use, so that the method choice does not depend on threading.
    workers = {"workers": blas_threads()} if xp.__name__ == "numpy" else {}
    n_images, channels, _, width = x.shape
    n_filters, group_channels, kh, kw = weight.shape
    out_rows, out_cols = out.shape[-2:]
    (sy, sx), (dy, dx) = stride, dilation
    span = (dy * (kh - 1) + 1, dx * (kw - 1) + 1)
    dilated = xp.zeros((n_filters, group_channels) + span, dtype=x.dtype)
    dilated[:, :, ::dy, ::dx] = weight
    filters_per_group = n_filters // groups
    band, chunk = _plan(x.shape, weight.shape, sy, span[0], out_rows, scratch_budget(x.nbytes, out.nbytes), fft)
    col_stop = (out_cols - 1) * sx + 1
    kept: tuple[tuple[int, int], Any] | None = None  # (shape, spectra) of an only filter chunk
    for r0 in range(0, out_rows, band):
        r1 = min(r0 + band, out_rows)
        in_rows = slice(r0 * sy, (r1 - 1) * sy + span[0])
        shape = fft_shape(fft, in_rows.stop - in_rows.start, width)
        x_spectra = fft.rfft2(x[:, :, in_rows], s=shape, **workers)
        for j0 in range(0, n_filters, chunk):
            j1 = min(j0 + chunk, n_filters)
            if kept is not None and kept[0] == shape:
                k_spectra = kept[1]  # bands of equal height share the kernel spectra
            else:
                k_spectra = fft.rfft2(dilated[j0:j1], s=shape, **workers)
                xp.conj(k_spectra, out=k_spectra)
                if chunk == n_filters:  # within the budget: _band_bytes counts one chunk's spectra
                    kept = (shape, k_spectra)
            products = xp.zeros((n_images, j1 - j0) + x_spectra.shape[-2:], dtype=x_spectra.dtype)
            for j in range(j0, j1):
                first = (j // filters_per_group) * group_channels
                for c in range(group_channels):
                    products[:, j - j0] += x_spectra[:, first + c] * k_spectra[j - j0, c]
            valid = fft.irfft2(products, s=shape, **workers)
            out[:, j0:j1, r0:r1] = valid[:, :, : (r1 - r0 - 1) * sy + 1 : sy, :col_stop:sx]
    return out
