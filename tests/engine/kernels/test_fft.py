"""The FFT conv path (``featuremap.engine.kernels.fft``): overlap-save bands and filter chunks, and
its accuracy near bright objects, against torch's direct float32 conv2d.

The FFT's float32 rounding error is spread over the whole band and scales with its energy, so a
few very bright pixels used to swamp the response everywhere else (7.7e-3 against a median
response of 6.8e-3 for a 1e6 patch). Criterion: away from the bright object (outputs whose window
does not touch it), ``max |result - float64 reference|`` stays within ``FACTOR`` times torch
float32's own error there, for the forced ``"fft"`` path and for ``"auto"`` alike.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from support.torch_reference import assert_close, case_arrays, torch_conv

from featuremap import banks
from featuremap.engine.kernels import choose_method, conv2d_valid
from featuremap.engine.kernels import fft as fft_module
from featuremap.engine.kernels.conv import estimate_seconds

torch = pytest.importorskip("torch")
F = torch.nn.functional

#: Allowed multiple of torch float32's error (measured: <= 0.7 with the protection, 60-8e4 without).
FACTOR = 4.0


def _torch(x, weight, dtype, groups=1):
    return F.conv2d(
        torch.from_numpy(np.asarray(x, dtype=dtype)),
        torch.from_numpy(np.asarray(weight, dtype=dtype)),
        groups=groups,
    ).numpy()


def _far(shape, kernel, box):
    """Mask of the outputs whose ``kernel``-sized window misses the input rows/columns of ``box``."""
    y0, y1, x0, x1 = box
    mask = np.ones(shape, dtype=bool)
    mask[max(0, y0 - kernel[0] + 1) : y1, max(0, x0 - kernel[1] + 1) : x1] = False
    return mask


def _gabor_with_bright_patch():
    """Gabor 31x31 bank (32 filters) on uniform(0, 1) 384^2 with a 10x10 patch of 1e6."""
    x = np.random.default_rng(0).uniform(0, 1, (1, 1, 384, 384)).astype(np.float32)
    box = (200, 210, 150, 160)
    x[..., box[0] : box[1], box[2] : box[3]] = 1e6
    return x, banks.get("gabor", size=31).weight.astype(np.float32), box


def _sixteen_bit(brightness=60000.0, seed=1, channels=1):
    """Camera-like 16-bit data: background 100 +- 10 noise (integers), one bright disk of radius 6."""
    rng = np.random.default_rng(seed)
    x = np.clip(np.round(100 + 10 * rng.standard_normal((1, channels, 384, 384))), 0, 65535)
    yy, xx = np.mgrid[:384, :384]
    x[:, 0, (yy - 190) ** 2 + (xx - 170) ** 2 <= 36] = brightness
    return x.astype(np.float32), (184, 197, 164, 177)


def _log4():
    return banks.get("log", sigmas=[4]).weight.astype(np.float32)  # 33x33


def _errors(result, x, weight, box, groups=1):
    """(ours, torch float32) max errors against the float64 reference over the far outputs."""
    reference = _torch(x, weight, np.float64, groups)
    far = np.broadcast_to(_far(reference.shape[-2:], weight.shape[-2:], box), reference.shape)
    ours = np.abs(result.astype(np.float64) - reference)[far].max()
    direct = np.abs(_torch(x, weight, np.float32, groups) - reference)[far].max()
    assert direct > 0
    return ours, direct


@pytest.mark.parametrize("method", ["auto", "fft"])
def test_gabor_far_from_a_bright_patch(method):
    x, weight, box = _gabor_with_bright_patch()
    ours, direct = _errors(conv2d_valid(x, weight, method=method), x, weight, box)
    assert ours <= FACTOR * direct, (ours, direct)


@pytest.mark.parametrize("method", ["auto", "fft"])
def test_sixteen_bit_log_far_from_a_bright_object(method):
    x, box = _sixteen_bit()
    weight = _log4()
    ours, direct = _errors(conv2d_valid(x, weight, method=method), x, weight, box)
    assert ours <= FACTOR * direct, (ours, direct)


def test_sixteen_bit_several_channels_and_groups():
    """Centring (channel means subtracted, ``mean * sum(weight)`` added back) with groups and strides."""
    x, box = _sixteen_bit(channels=4)
    x[:, 2:] += 1000  # other offsets in the second group
    rng = np.random.default_rng(2)
    weight = (rng.standard_normal((6, 2, 25, 25)) + 0.5).astype(np.float32)  # non-zero sums
    result = conv2d_valid(x, weight, groups=2, method="fft")
    ours, direct = _errors(result, x, weight, box, groups=2)
    assert ours <= FACTOR * direct, (ours, direct)
    strided = conv2d_valid(x, weight, groups=2, stride=(2, 3), dilation=(1, 2), method="fft")
    expected = F.conv2d(
        torch.from_numpy(x.astype(np.float64)),
        torch.from_numpy(weight.astype(np.float64)),
        stride=(2, 3),
        dilation=(1, 2),
        groups=2,
    ).numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(strided, expected, atol=1e-6 * scale, rtol=0)


@pytest.mark.parametrize("case", ["gabor", "sixteen_bit"])
def test_float32_spectra_alone_fail_the_criterion(case):
    """The bright cases are real: without float64 spectra the FFT misses the bound by far."""
    if case == "gabor":
        x, weight, box = _gabor_with_bright_patch()
    else:
        (x, box), weight = _sixteen_bit(), _log4()
    out = np.empty(
        _torch(x[..., :40, :40], weight, np.float32).shape[:2]
        + (x.shape[-2] - weight.shape[-2] + 1,) * 2,
        dtype=np.float32,
    )
    fft_module.fft_conv(x, weight, (1, 1), (1, 1), 1, out, precision="float32")
    ours, direct = _errors(out, x, weight, box)
    assert ours > 10 * FACTOR * direct, (ours, direct)
    assert fft_module.spectra_dtype(x, weight.shape[-2:]) == "float64"


def _well_conditioned():
    rng = np.random.default_rng(3)
    spectrum = np.fft.rfft2(rng.standard_normal((256, 256)))
    frequency = np.hypot(np.fft.fftfreq(256)[:, None], np.fft.rfftfreq(256)[None])
    natural = np.fft.irfft2(
        spectrum / np.maximum(frequency, 1 / 256), s=(256, 256)
    )  # 1/f, like photographs
    natural = (natural - natural.min()) / np.ptp(natural) * 255
    sixteen_bit, _ = _sixteen_bit(brightness=100.0)  # no bright object
    return {
        "uniform": rng.uniform(0, 1, (1, 1, 256, 256)),
        "normal": rng.standard_normal((2, 3, 128, 128)),
        "relu": np.maximum(rng.standard_normal((1, 2, 256, 256)), 0),
        "sparse": np.where(
            rng.uniform(size=(1, 1, 256, 256)) < 0.05, rng.uniform(1, 2, (1, 1, 256, 256)), 0
        ),
        "sixteen_bit": sixteen_bit,
        "natural": natural[None, None],
    }


@pytest.mark.parametrize("name", ["uniform", "normal", "relu", "sparse", "sixteen_bit", "natural"])
def test_well_conditioned_data_keeps_float32_spectra(name):
    x = _well_conditioned()[name].astype(np.float32)
    assert fft_module.dynamic_range(x, (31, 31)) < fft_module.FLOAT64_RANGE / 1.3
    assert fft_module.spectra_dtype(x, (31, 31)) == "float32"
    # ... and the float32 FFT is then as accurate as torch's direct float32 (measured 0.02-0.3x).
    weight = banks.get("gabor", size=31).weight[:8].astype(np.float32)
    images = x.reshape((-1, 1, *x.shape[-2:]))
    ours, direct = _errors(conv2d_valid(images, weight, method="fft"), images, weight, (0, 0, 0, 0))
    assert ours <= FACTOR * direct, (ours, direct)


def test_dynamic_range_of_degenerate_inputs():
    assert fft_module.dynamic_range(np.zeros((1, 1, 40, 40), np.float32), (5, 5)) == 0.0
    assert fft_module.dynamic_range(np.full((1, 2, 40, 40), 7.0, np.float32), (5, 5)) == 0.0
    sparse = np.zeros((1, 1, 40, 40), np.float32)
    sparse[0, 0, 3, 3] = 1.0  # most tiles all zero: no typical magnitude to compare with
    assert fft_module.dynamic_range(sparse, (5, 5)) == np.inf
    assert fft_module.spectra_dtype(sparse, (5, 5)) == "float64"


def test_cost_model_charges_float64_spectra():
    rng = np.random.default_rng(4)
    weight = rng.standard_normal((8, 1, 31, 31)).astype(np.float32)
    shape = (1, 1, 1054, 1054)
    single = estimate_seconds("fft", shape, weight.shape, (1, 1), (1, 1), 1)
    double = estimate_seconds("fft", shape, weight.shape, (1, 1), (1, 1), 1, float64_spectra=True)
    assert 2.0 <= double / single < 3.0
    assert choose_method(shape[1:], weight, (1, 1), (1, 1), 1) == "fft"
    large = rng.standard_normal((16, 3, 41, 41)).astype(
        np.float32
    )  # measured: FFT 0.16 s/0.32 s, GEMM 1.2 s
    assert choose_method((3, 1064, 1064), large, (1, 1), (1, 1), 1, float64_spectra=True) == "fft"
    # one filter on 256^2: the scratch budget cuts float64 spectra into many short bands
    # (measured: GEMM 6.7 ms, float32 FFT 1.7 ms, float64 FFT 25 ms)
    weight = rng.standard_normal((1, 1, 33, 33)).astype(np.float32)
    assert choose_method((1, 256, 256), weight, (1, 1), (1, 1), 1) == "fft"
    assert choose_method((1, 256, 256), weight, (1, 1), (1, 1), 1, float64_spectra=True) == "gemm"


def test_float64_spectra_stay_within_the_memory_bound():
    x, _ = _sixteen_bit()
    weight = _log4()
    conv2d_valid(x[..., :60, :60], weight, method="fft")  # warm FFT plans
    tracemalloc.start()
    result = conv2d_valid(x, weight, method="fft")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak <= 2 * (x.nbytes + result.nbytes), (peak, x.nbytes, result.nbytes)


@pytest.mark.gpu
def test_bright_object_on_cupy():
    cupy = pytest.importorskip("cupy")
    x, box = _sixteen_bit()
    weight = _log4()
    result = conv2d_valid(cupy.asarray(x), cupy.asarray(weight), method="fft").get()
    ours, direct = _errors(result, x, weight, box)
    assert ours <= FACTOR * direct, (ours, direct)
    assert fft_module.spectra_dtype(cupy.asarray(x), weight.shape[-2:]) == "float64"


@pytest.mark.parametrize(
    "n_filters", [6, 1]
)  # 1: one filter chunk, its spectra reused by equal bands
def test_fft_bands_and_filter_chunks(monkeypatch, n_filters):
    """Overlap-save bands along y and chunks of filters give the same result."""
    monkeypatch.setattr(fft_module, "scratch_budget", lambda input_bytes, output_bytes: 40_000)
    x, weight, bias = case_arrays(11, (2,), 2, n_filters, 9, 5, 1, 60, 33)
    result = conv2d_valid(x, weight, bias, stride=(2, 1), dilation=(1, 2), method="fft")
    assert_close(result, torch_conv(x, weight, bias, (2, 1), (1, 2), 1), x, weight)
