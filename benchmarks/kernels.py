"""Benchmark of featuremap.engine.kernels.conv2d_valid against its peers (PyTorch CPU, SciPy).

Usage::

    .venv/bin/python benchmarks/kernels.py [--threads 2] [--repeats 3] [--avx2] [--crossover]

Cases: the "small" group against PyTorch (7x7, 5x5/2, 3x3; AlexNet's 11x11/4 on 3 -> 24 channels,
1024^2 and 8 x 227^2; ResNet's 7x7/2 stem; depthwise 3x3; 5x5; 1x1), summarised by the geometric
mean and the minimum of the ratios; then a large kernel against SciPy's FFT and a separable bank
against scipy.ndimage. Times are medians of ``--repeats`` calls, ours and the peer's interleaved,
each repeat starting with another side.
Prints per case: featuremap seconds (padding included), peer seconds, ratio = peer / featuremap
(> 1: featuremap is faster), the method chosen (for the GEMM with its patch path,
:func:`featuremap.engine.kernels.gemm.patch_path`), and the peak memory of our call beyond its input
(tracemalloc, output included) next to the 2 x (input + output) limit. ``--crossover`` instead
times the forced GEMM and FFT paths over kernel sizes, with the cost model's estimates, to
check where FFT starts to win (the constants in ``featuremap/engine/kernels/conv.py``).

Threads: the process re-executes itself once with ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/
``MKL_NUM_THREADS`` = N and without ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` (which pin
OpenBLAS to an older, slower kernel on this machine; only this benchmark process is affected).
PyTorch gets ``torch.set_num_threads(N)``; scipy.fft uses N workers (featuremap follows the
OpenBLAS thread count); scipy.ndimage is single-threaded by design.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import time
import tracemalloc

_PINNING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


#: ``--avx2``: both sides limited to AVX2 on an AVX-512 machine (OpenBLAS's Haswell kernel,
#: oneDNN's and ATen's AVX2 code), to measure an AVX2 machine's balance on this one.
_AVX2 = {
    "OPENBLAS_CORETYPE": "Haswell",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
}


def _reexec_with_threads(threads: int, keep_pinning: bool, avx2: bool = False) -> None:
    """Restart this script once with ``threads`` BLAS threads and (unless ``keep_pinning``) a
    clean OpenBLAS environment; with ``avx2``, limited to AVX2 (:data:`_AVX2`)."""
    wanted = {name: str(threads) for name in _THREAD_VARIABLES} | (_AVX2 if avx2 else {})
    drop = () if keep_pinning or avx2 else _PINNING
    if all(os.environ.get(k) == v for k, v in wanted.items()) and not any(
        k in os.environ for k in drop
    ):
        return
    env = {k: v for k, v in os.environ.items() if k not in drop} | wanted
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def _median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


#: Settling time before every timed call. torch's OpenMP threads spin after each of its calls
#: (libgomp's default wait policy: ~5 ms on this machine), taking a core from whatever runs
#: next in the process: featuremap's numba depthwise 3x3 took 6-9 ms wall and 12-16 CPU-ms
#: right after torch's call against 3.5 ms and 4.5 CPU-ms otherwise (GOMP_SPINCOUNT=0: 3.9 ms).
#: The main thread busy-waits meanwhile (sleeping let the VM's vCPUs idle down: torch's next
#: 8 x 227^2 call took 8.6 ms instead of 1.7), so every side starts on a settled machine
#: whichever side ran before it.
_SETTLE_SECONDS = 0.01


def _timed(function) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one call, after
    :data:`_SETTLE_SECONDS` of busy waiting."""
    settled = time.perf_counter() + _SETTLE_SECONDS
    while time.perf_counter() < settled:
        pass
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def _without_torch(function):
    """``function`` with featuremap's optional torch backend switched off (the NumPy paths'
    times: ``no-torch s``), to show what the backend changes, interleaved with the rest."""
    from featuremap.engine.kernels import onednn

    def call():
        available = onednn.available
        onednn.available = lambda: False
        try:
            return function()
        finally:
            onednn.available = available

    return call


def _peak_bytes(function) -> int:
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--crossover", action="store_true", help="time GEMM against FFT over kernel sizes"
    )
    parser.add_argument(
        "--keep-openblas-pinning",
        action="store_true",
        help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE as the environment sets them",
    )
    parser.add_argument(
        "--avx2",
        action="store_true",
        help="limit OpenBLAS, oneDNN and ATen to AVX2 (an AVX2 machine's balance on AVX-512)",
    )
    args = parser.parse_args()
    _reexec_with_threads(args.threads, args.keep_openblas_pinning, args.avx2)
    if args.crossover:
        crossover(args.repeats)
        return

    import numpy as np
    import scipy.fft
    import scipy.ndimage
    import scipy.signal
    import torch

    import featuremap.banks
    from featuremap.engine.kernels import choose_method, conv2d_valid
    from featuremap.engine.kernels import gemm as gemm_module

    torch.set_num_threads(args.threads)
    # featuremap imports its optional backends once they pay (kernels/_optional.py); a long job
    # has them imported, so the benchmark measures that steady state: torch is imported above
    # for the peer, numba (the "fast" extra, depthwise layers) here where it is installed
    with contextlib.suppress(ImportError):
        import numba  # noqa: F401
    rng = np.random.default_rng(0)
    rows = []

    def ours_call(x, weight, stride, groups=1):
        half = weight.shape[-1] // 2
        return lambda: conv2d_valid(  # zero padding added by the kernel (torch's own padding)
            x,
            weight,
            stride=(stride, stride),
            groups=groups,
            zero_padding=((half, half), (half, half)),
        )

    def record(name, x, weight, stride, ours, peer, peer_name, group, groups=1):
        result, expected = ours(), peer()
        scale = float(np.abs(weight).sum(axis=(1, 2, 3)).max() * np.abs(x).max())
        error = float(np.abs(result - expected).max()) / scale
        numpy_only = _without_torch(ours)
        times = {"ours": [], "peer": [], "numpy": []}
        pair = [("ours", ours), ("peer", peer)]
        for repeat in range(args.repeats):  # interleaved: a busy spell slows all sides alike
            # ours and the peer swap places every repeat and the NumPy-only call comes last,
            # so each of them follows it (whose memory traffic leaves the caches cold for the
            # next call) equally often; rotating all three sides made ours follow it in two
            # repeats of three and the peer in one (torch-routed cases: +0.3-0.4 ms for ours)
            order = pair if repeat % 2 == 0 else pair[::-1]
            for side, function in (*order, ("numpy", numpy_only)):
                times[side].append(_timed(function))
        ours_s, peer_s, numpy_s = (
            statistics.median(t[0] for t in times[side]) for side in ("ours", "peer", "numpy")
        )
        ours_cpu, peer_cpu, numpy_cpu = (
            statistics.median(t[1] for t in times[side]) for side in ("ours", "peer", "numpy")
        )
        half = weight.shape[-1] // 2
        padded_shape = (*x.shape[:-2], x.shape[-2] + 2 * half, x.shape[-1] + 2 * half)
        method = _path(padded_shape, weight, (stride, stride), groups)
        peak = _peak_bytes(ours)
        limit = 2 * (x.nbytes + result.nbytes)
        timing = (ours_s, peer_s, numpy_s, ours_cpu, peer_cpu, numpy_cpu)
        rows.append((name, *timing, peer_name, method, peak, limit, error, group))

    def _path(padded_shape, weight, stride, groups):
        method = choose_method(padded_shape, weight, stride, (1, 1), groups)
        patch_path = getattr(gemm_module, "patch_path", None)  # how the GEMM copies patches
        if method == "gemm" and patch_path is not None:
            return f"gemm/{patch_path(weight.shape, stride, groups)}"
        return method

    def torch_peer(x, weight, stride, groups=1):
        images = x.reshape((-1, *x.shape[-3:]))  # (N, C, H, W): torch wants one batch axis
        xt, wt = torch.from_numpy(images), torch.from_numpy(weight)

        def peer():
            result = torch.nn.functional.conv2d(
                xt, wt, stride=stride, padding=weight.shape[-1] // 2, groups=groups
            )
            return result.numpy().reshape((*x.shape[:-3], *result.shape[1:]))

        return peer

    # (batch, C, J, k, stride, groups, size): the first three are the original cases; then
    # strided large kernels (AlexNet's first layer 11x11/4 3->24, ResNet's stem 7x7/2), a
    # depthwise 3x3, a 5x5 and a 1x1 (issue #13, item 6).
    for batch, channels, filters, k, stride, groups, size in [
        ((), 1, 16, 7, 1, 1, 2048),
        ((), 3, 32, 5, 2, 1, 2048),
        ((), 16, 32, 3, 1, 1, 1024),
        ((), 3, 24, 11, 4, 1, 1024),
        ((8,), 3, 24, 11, 4, 1, 227),
        ((), 3, 64, 7, 2, 1, 512),
        ((), 64, 64, 3, 1, 64, 256),
        ((), 32, 32, 5, 1, 1, 256),
        ((), 64, 128, 1, 1, 1, 256),
    ]:
        x = rng.standard_normal((*batch, channels, size, size), dtype=np.float32)
        weight = rng.standard_normal((filters, channels // groups, k, k), dtype=np.float32)
        name = f"C={channels} J={filters} k={k} s={stride}"
        name += f" g={groups}" if groups > 1 else ""
        name += f" {batch[0]}x{size}^2" if batch else f" {size}^2"
        record(
            name,
            x,
            weight,
            stride,
            ours_call(x, weight, stride, groups),
            torch_peer(x, weight, stride, groups),
            "torch",
            "small",
            groups,
        )

    x = rng.standard_normal((1, 1024, 1024), dtype=np.float32)
    weight = rng.standard_normal((8, 1, 31, 31), dtype=np.float32)
    flipped = np.ascontiguousarray(weight[:, 0, ::-1, ::-1])

    def fftconvolve_peer():
        with scipy.fft.set_workers(args.threads):
            # Broadcast explicitly: with a batch axis of 1 SciPy centres "same" wrongly.
            images = np.broadcast_to(x, flipped.shape[:1] + x.shape[1:])
            return scipy.signal.fftconvolve(images, flipped, mode="same", axes=(-2, -1))

    record(
        "C=1 J=8 k=31 s=1 1024^2",
        x,
        weight,
        1,
        ours_call(x, weight, 1),
        fftconvolve_peer,
        "fftconvolve",
        "large",
    )

    x = rng.standard_normal((1, 2048, 2048), dtype=np.float32)
    # featuremap's own Gaussian-derivative bank: 3 scales x orders <= 2, J = 18 rank-1 filters
    weight = featuremap.banks.get("gaussian", sigmas=[1.0, 2.0, 4.0], size=25).weight

    def correlate1d_peer():
        # Row filters are shared between outputs (9 distinct for 18 filters): filter along x once each.
        out = np.empty((weight.shape[0], *x.shape[-2:]), dtype=np.float32)
        along_x = {}
        for j, kernel in enumerate(weight[:, 0].astype(np.float64)):
            u, s, vt = np.linalg.svd(kernel)
            column, row = u[:, 0] * s[0], vt[0]
            key = row.round(7).tobytes()
            if key not in along_x:
                along_x[key] = scipy.ndimage.correlate1d(x[0], row, axis=1, mode="constant")
            out[j] = scipy.ndimage.correlate1d(along_x[key], column, axis=0, mode="constant")
        return out

    record(
        "separable J=18 k=25 2048^2",
        x,
        weight,
        1,
        ours_call(x, weight, 1),
        correlate1d_peer,
        "correlate1d",
        "sep",
    )

    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "native")
    print(
        f"cpu: {_cpu_model()}; {_blas_line()}; torch {torch.__version__} "
        f"(ATen {torch.backends.cpu.get_cpu_capability()}, oneDNN ISA {isa})"
    )
    print(
        f"threads={args.threads} repeats={args.repeats} (median, interleaved); ratio = peer / featuremap, > 1 = featuremap faster; "
        f"{_openblas_environment()}; load average {_load()}"
    )
    print(
        "cpu s: CPU seconds of the process per call (all threads); no-torch s: featuremap with "
        "its optional torch backend off (NumPy paths only, wall and CPU), interleaved; gain = "
        "no-torch s / ours s"
    )
    header = (
        f"{'case':<34}{'ours s':>9}{'peer s':>9}  {'peer':<12}{'ratio':>7}  {'method':<22}"
        f"{'peak MB':>9}{'limit MB':>9}{'rel err':>9}{'ours cpu':>9}{'peer cpu':>9}"
        f"{'no-torch s':>11}{'cpu':>8}{'gain':>6}"
    )
    print(header)
    for name, *timing, peer_name, method, peak, limit, error, _ in rows:
        ours_s, peer_s, numpy_s, ours_cpu, peer_cpu, numpy_cpu = timing
        print(
            f"{name:<34}{ours_s:>9.4f}{peer_s:>9.4f}  {peer_name:<12}{peer_s / ours_s:>7.2f}  {method:<22}"
            f"{peak / 2**20:>9.1f}{limit / 2**20:>9.1f}{error:>9.1e}{ours_cpu:>9.4f}{peer_cpu:>9.4f}"
            f"{numpy_s:>11.4f}{numpy_cpu:>8.4f}{numpy_s / ours_s:>6.2f}"
        )
    small = [peer_s / ours_s for _, ours_s, peer_s, *_, group in rows if group == "small"]
    print(
        f"small kernels vs torch ({len(small)} cases): geometric mean ratio "
        f"{math.exp(sum(map(math.log, small)) / len(small)):.2f}, minimum {min(small):.2f}"
    )


def _cpu_model() -> str:
    """``model name`` of /proc/cpuinfo, and whether the CPU has AVX-512 (``avx512f``)."""
    try:
        with open("/proc/cpuinfo") as info:
            lines = info.read().splitlines()
    except OSError:
        import platform

        return platform.processor() or "unknown"
    model = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?"
    )
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{model} ({vector})"


def _openblas_environment() -> str:
    """The OpenBLAS/OpenMP variables of this process (they pick the kernel and the threads)."""
    names = (*_PINNING, *_THREAD_VARIABLES, "ONEDNN_MAX_CPU_ISA")
    return " ".join(f"{name}={os.environ.get(name, '(unset)')}" for name in names)


def _load() -> str:
    """The 1-minute load average: other processes competing for the cores during the run."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def _blas_line() -> str:
    """threadpoolctl's view of numpy's BLAS: library, kernel (architecture), threads."""
    from threadpoolctl import threadpool_info

    return "; ".join(
        f"blas {info.get('internal_api')} {info.get('version')} kernel="
        f"{info.get('architecture') or info.get('corename')} threads={info.get('num_threads')}"
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    )


def crossover(repeats: int) -> None:
    """Seconds of forced ``gemm`` and ``fft`` (measured, then estimated) per kernel size."""
    import numpy as np

    from featuremap.engine.kernels import conv2d_valid
    from featuremap.engine.kernels.conv import estimate_seconds

    rng = np.random.default_rng(0)
    print(f"{'C':>3}{'J':>4}{'size':>6}{'k':>4}{'gemm s':>9}{'model':>8}{'fft s':>9}{'model':>8}")
    for channels, filters, size, kernels in [
        (1, 16, 1024, (3, 7, 11, 15, 21, 25)),
        (16, 32, 512, (3, 7, 11, 15, 21)),
    ]:
        for k in kernels:
            x = rng.standard_normal((channels, size + k - 1, size + k - 1), dtype=np.float32)
            weight = rng.standard_normal((filters, channels, k, k), dtype=np.float32)
            row = f"{channels:>3}{filters:>4}{size:>6}{k:>4}"
            for method in ("gemm", "fft"):
                seconds = _median_seconds(lambda: conv2d_valid(x, weight, method=method), repeats)
                model = estimate_seconds(method, x.shape, weight.shape, (1, 1), (1, 1), 1)
                row += f"{seconds:>9.4f}{model:>8.4f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
