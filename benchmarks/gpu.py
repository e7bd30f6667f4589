"""Benchmark of featuremap on the GPU against featuremap on the CPU and PyTorch CUDA ``conv2d``.

Usage::

    .venv/bin/python benchmarks/gpu.py [--threads 2] [--repeats 5]

The cases are those of ``benchmarks/kernels.py``. Per case it prints the seconds of

* ``cpu``: featuremap on NumPy (padding included), ``--threads`` BLAS threads;
* ``gpu``: featuremap on CuPy with ``method="auto"`` (padding included; data already on the GPU);
* ``direct``: the CUDA direct kernel alone, where it applies (kernel sides up to 7);
* ``torch``: ``torch.nn.functional.conv2d`` on CUDA (cuDNN), when this torch build has CUDA;
* ``copy``: moving the input to the GPU and the output back, what a GPU worker adds per block;

and the largest error of the GPU result relative to ``sum|w| * max|x|``. GPU times are medians
of ``--repeats`` runs after one warm-up, each ended by a device synchronisation. Without CuPy or
a CUDA device it prints "no CUDA device" and exits with status 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from kernels import _reexec_with_threads

# (name, channels, filters, kernel, stride, size) as in benchmarks/kernels.py; kernel None = the
# separable Gaussian-derivative bank of size 25.
CASES = [
    ("C=1 J=16 k=7 s=1 2048^2", 1, 16, 7, 1, 2048),
    ("C=3 J=32 k=5 s=2 2048^2", 3, 32, 5, 2, 2048),
    ("C=16 J=32 k=3 s=1 1024^2", 16, 32, 3, 1, 1024),
    ("C=1 J=8 k=31 s=1 1024^2", 1, 8, 31, 1, 1024),
    ("separable J=18 k=25 2048^2", 1, 18, None, 1, 2048),
]


def _cuda():
    """CuPy when it imports and sees a CUDA device, else None."""
    try:
        import cupy

        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # noqa: BLE001 -- no driver, no device, broken install: all mean "no GPU"
        return None


def _median_seconds(function, repeats: int, synchronize=lambda: None) -> float:
    function()  # warm-up: kernel compilation, cuFFT plans, allocator pools
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cp = _cuda()
    if cp is None:
        print("no CUDA device")
        return
    _reexec_with_threads(args.threads)

    import numpy as np

    import featuremap
    from featuremap.engine.kernels import conv2d_valid, pad
    from featuremap.engine.kernels.cuda import direct_conv2d, supports

    torch = _torch_cuda()
    synchronize = cp.cuda.Device().synchronize
    rng = np.random.default_rng(0)
    print(
        f"device: {cp.cuda.runtime.getDeviceProperties(0)['name'].decode()}, cupy {cp.__version__}, "
        f"torch CUDA: {'yes' if torch else 'no'}; threads={args.threads} repeats={args.repeats} (median)"
    )
    print(
        f"{'case':<28}{'cpu s':>9}{'gpu s':>9}{'direct s':>10}{'torch s':>9}{'copy s':>9}{'cpu/gpu':>9}{'rel err':>9}"
    )
    for name, channels, filters, k, stride, size in CASES:
        x = rng.standard_normal((channels, size, size), dtype=np.float32)
        weight = (
            np.array(featuremap.banks.get("gaussian", sigmas=[1.0, 2.0, 4.0], size=25).weight)
            if k is None
            else rng.standard_normal((filters, channels, k, k), dtype=np.float32)
        )
        half = weight.shape[-1] // 2
        widths = ((half, half), (half, half))
        x_gpu, weight_gpu = cp.asarray(x), cp.asarray(weight)

        def cpu():
            return conv2d_valid(pad(x, widths, "zeros"), weight, stride=(stride, stride))

        def gpu():
            return conv2d_valid(pad(x_gpu, widths, "zeros"), weight_gpu, stride=(stride, stride))

        def direct():
            return direct_conv2d(pad(x_gpu, widths, "zeros"), weight_gpu, stride=(stride, stride))

        expected = cpu()
        scale = float(np.abs(weight).sum(axis=(1, 2, 3)).max() * np.abs(x).max())
        error = float(np.abs(gpu().get() - expected).max()) / scale
        cpu_s = _median_seconds(cpu, args.repeats)
        gpu_s = _median_seconds(gpu, args.repeats, synchronize)
        direct_s = (
            _median_seconds(direct, args.repeats, synchronize)
            if supports(weight.shape[-2:], (stride, stride), (1, 1))
            else float("nan")
        )
        if supports(weight.shape[-2:], (stride, stride), (1, 1)):
            error = max(error, float(np.abs(direct().get() - expected).max()) / scale)
        out_gpu = gpu()
        copy_s = _median_seconds(lambda: (cp.asarray(x), out_gpu.get()), args.repeats, synchronize)
        torch_s = float("nan")
        if torch is not None:
            xt = torch.as_tensor(x[None], device="cuda")
            wt = torch.as_tensor(weight, device="cuda")
            torch_s = _median_seconds(
                lambda: torch.nn.functional.conv2d(xt, wt, stride=stride, padding=half),
                args.repeats,
                torch.cuda.synchronize,
            )
        print(
            f"{name:<28}{cpu_s:>9.4f}{gpu_s:>9.4f}{direct_s:>10.4f}{torch_s:>9.4f}{copy_s:>9.4f}"
            f"{cpu_s / gpu_s:>9.1f}{error:>9.1e}"
        )

    _volumes(cp, torch, args.repeats, synchronize)


# (name, channels, filters, kernel, (D, H, W)); kernel None = the 3-D Gaussian bank (30 filters)
VOLUME_CASES = [
    ("3-D C=16 J=32 k=3 64x128^2", 16, 32, 3, (64, 128, 128)),
    ("3-D C=1 J=16 k=5 64x256^2", 1, 16, 5, (64, 256, 256)),
    ("3-D gaussian J=30 64x256^2", 1, 30, None, (64, 256, 256)),
]


def _volumes(cp, torch, repeats: int, synchronize) -> None:
    """``conv3d_valid`` on CuPy against the CPU and torch's CUDA ``conv3d``."""
    import numpy as np

    import featuremap
    from featuremap.engine.kernels import conv3d_valid

    rng = np.random.default_rng(1)
    for name, channels, filters, k, size in VOLUME_CASES:
        weight = (
            np.array(featuremap.banks.get("gaussian", ndim=3, sigmas=[1.0, 1.6, 3.5]).weight)
            if k is None
            else rng.standard_normal((filters, channels, k, k, k), dtype=np.float32)
        )
        x = rng.standard_normal((1, channels, *size), dtype=np.float32)
        x_gpu, weight_gpu = cp.asarray(x), cp.asarray(weight)
        expected = conv3d_valid(x, weight)
        scale = float(np.abs(weight).sum(axis=(1, 2, 3, 4)).max() * np.abs(x).max())
        error = float(np.abs(conv3d_valid(x_gpu, weight_gpu).get() - expected).max()) / scale
        cpu_s = _median_seconds(lambda: conv3d_valid(x, weight), repeats)
        gpu_s = _median_seconds(lambda: conv3d_valid(x_gpu, weight_gpu), repeats, synchronize)
        torch_s = float("nan")
        if torch is not None:
            xt, wt = torch.as_tensor(x, device="cuda"), torch.as_tensor(weight, device="cuda")
            torch_s = _median_seconds(
                lambda: torch.nn.functional.conv3d(xt, wt), repeats, torch.cuda.synchronize
            )
        print(
            f"{name:<28}{cpu_s:>9.4f}{gpu_s:>9.4f}{'':>10}{torch_s:>9.4f}{'':>9}"
            f"{cpu_s / gpu_s:>9.1f}{error:>9.1e}"
        )


if __name__ == "__main__":
    main()
