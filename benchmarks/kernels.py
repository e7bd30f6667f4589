"""Benchmark of featuremap._kernels.conv2d_valid against its peers (PyTorch CPU, SciPy).

Usage::

    .venv/bin/python benchmarks/kernels.py [--threads 2] [--repeats 3] [--crossover]

Prints per case: featuremap seconds (padding included), peer seconds, ratio = peer / featuremap
(> 1: featuremap is faster), the method chosen, and the peak memory of our call beyond its input
(tracemalloc, output included) next to the 2 x (input + output) limit. ``--crossover`` instead
times the forced GEMM and FFT paths over kernel sizes, with the cost model's estimates, to
check where FFT starts to win (the constants in ``featuremap/_kernels/conv.py``).

Threads: the process re-executes itself once with ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/
``MKL_NUM_THREADS`` = N and without ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` (which pin
OpenBLAS to an older, slower kernel on this machine; only this benchmark process is affected).
PyTorch gets ``torch.set_num_threads(N)``; scipy.fft uses N workers (featuremap follows the
OpenBLAS thread count); scipy.ndimage is single-threaded by design.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import tracemalloc

_PINNING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _reexec_with_threads(threads: int, keep_pinning: bool) -> None:
    """Restart this script once with ``threads`` BLAS threads and (unless ``keep_pinning``) a
    clean OpenBLAS environment."""
    wanted = {name: str(threads) for name in _THREAD_VARIABLES}
    drop = () if keep_pinning else _PINNING
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
    args = parser.parse_args()
    _reexec_with_threads(args.threads, args.keep_openblas_pinning)
    if args.crossover:
        crossover(args.repeats)
        return

    import numpy as np
    import scipy.fft
    import scipy.ndimage
    import scipy.signal
    import torch

    import featuremap.banks
    from featuremap._kernels import choose_method, conv2d_valid, pad

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []

    def ours_call(x, weight, stride):
        half = weight.shape[-1] // 2
        return lambda: conv2d_valid(
            pad(x, ((half, half), (half, half)), "zeros"), weight, stride=(stride, stride)
        )

    def record(name, x, weight, stride, ours, peer, peer_name, group):
        result, expected = ours(), peer()
        scale = float(np.abs(weight).sum(axis=(1, 2, 3)).max() * np.abs(x).max())
        error = float(np.abs(result - expected).max()) / scale
        ours_s = _median_seconds(ours, args.repeats)
        peer_s = _median_seconds(peer, args.repeats)
        half = weight.shape[-1] // 2
        padded_shape = (*x.shape[:-2], x.shape[-2] + 2 * half, x.shape[-1] + 2 * half)
        method = choose_method(padded_shape, weight, (stride, stride), (1, 1), 1)
        peak = _peak_bytes(ours)
        limit = 2 * (x.nbytes + result.nbytes)
        rows.append((name, ours_s, peer_s, peer_name, method, peak, limit, error, group))

    def torch_peer(x, weight, stride):
        xt, wt = torch.from_numpy(x[None]), torch.from_numpy(weight)
        return lambda: torch.nn.functional.conv2d(
            xt, wt, stride=stride, padding=weight.shape[-1] // 2
        )[0].numpy()

    for channels, filters, k, stride, size in [
        (1, 16, 7, 1, 2048),
        (3, 32, 5, 2, 2048),
        (16, 32, 3, 1, 1024),
    ]:
        x = rng.standard_normal((channels, size, size), dtype=np.float32)
        weight = rng.standard_normal((filters, channels, k, k), dtype=np.float32)
        name = f"C={channels} J={filters} k={k} s={stride} {size}^2"
        record(
            name,
            x,
            weight,
            stride,
            ours_call(x, weight, stride),
            torch_peer(x, weight, stride),
            "torch",
            "small",
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

    print(
        f"threads={args.threads} repeats={args.repeats} (median); ratio = peer / featuremap, > 1 = featuremap faster; "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}"
    )
    header = (
        f"{'case':<28}{'ours s':>9}{'peer s':>9}  {'peer':<12}{'ratio':>7}  {'method':<10}"
        f"{'peak MB':>9}{'limit MB':>9}{'rel err':>9}"
    )
    print(header)
    for name, ours_s, peer_s, peer_name, method, peak, limit, error, _ in rows:
        print(
            f"{name:<28}{ours_s:>9.4f}{peer_s:>9.4f}  {peer_name:<12}{peer_s / ours_s:>7.2f}  {method:<10}"
            f"{peak / 2**20:>9.1f}{limit / 2**20:>9.1f}{error:>9.1e}"
        )
    small = [peer_s / ours_s for _, ours_s, peer_s, *_, group in rows if group == "small"]
    print(
        f"geometric mean ratio, small kernels vs torch: {math.exp(sum(map(math.log, small)) / len(small)):.2f}"
    )


def crossover(repeats: int) -> None:
    """Seconds of forced ``gemm`` and ``fft`` (measured, then estimated) per kernel size."""
    import numpy as np

    from featuremap._kernels import conv2d_valid
    from featuremap._kernels.conv import estimate_seconds

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
