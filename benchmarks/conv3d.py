"""Benchmark of featuremap.engine.kernels.conv3d_valid against PyTorch's conv3d and SciPy.

Usage::

    .venv/bin/python benchmarks/conv3d.py [--threads 2] [--repeats 5] [--quick]

(a) Eight typical 3-D CNN layers, ``padding = dilation * (k // 2)``, against
``torch.nn.functional.conv3d`` (``torch.set_num_threads(N)``): seconds of each (best of
``--repeats`` calls, ours and torch's interleaved; our time includes padding the volume), the
ratio torch / ours (> 1: featuremap is faster), the path :func:`conv3d_valid` took, and the
geometric mean and minimum of the ratios (the issue's target: >= 1.0 and >= 0.7).
(b) featuremap's 3-D Gaussian-derivative bank (orders ``oz + oy + ox <= 2`` at sigmas 1, 1.6 and
3.5: 30 filters of 29^3, SciPy's 1-D kernels mirrored) on a 64 x 256 x 256 volume, against
``scipy.ndimage.gaussian_filter(order=...)`` per filter (zero borders on both sides; SciPy's
filters are single-threaded).

``--quick`` halves the volumes (a smoke run). Measured results and their analysis: the module
docstrings of ``featuremap/engine/kernels/conv3d.py`` and ``separable3d.py``. The process re-executes itself with ``N`` BLAS
threads and without the OpenBLAS pinning of the environment, like ``benchmarks/kernels.py``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from kernels import _blas_line, _cpu_model, _reexec_with_threads

# (name, C, J, k, stride, dilation, groups, (D, H, W))
CASES = [
    ("C=1 J=16 k=3", 1, 16, 3, 1, 1, 1, (64, 128, 128)),
    ("C=16 J=16 k=3", 16, 16, 3, 1, 1, 1, (32, 128, 128)),
    ("C=16 J=32 k=3 s=2", 16, 32, 3, 2, 1, 1, (64, 128, 128)),
    ("C=32 J=32 k=3", 32, 32, 3, 1, 1, 1, (32, 96, 96)),
    ("C=8 J=8 k=5", 8, 8, 5, 1, 1, 1, (32, 128, 128)),
    ("C=4 J=8 k=7", 4, 8, 7, 1, 1, 1, (32, 96, 96)),
    ("C=16 J=16 k=3 g=16", 16, 16, 3, 1, 1, 16, (64, 128, 128)),
    ("C=16 J=16 k=3 d=2", 16, 16, 3, 1, 2, 1, (32, 128, 128)),
]
SIGMAS = (1.0, 1.6, 3.5)
TRUNCATE = 4.0


def _best_interleaved(functions: dict, repeats: int) -> dict:
    """Best seconds of each function, the calls interleaved: a busy spell slows all alike."""
    best = dict.fromkeys(functions, math.inf)
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def learned_layers(args) -> list[float]:
    """Part (a): print one row per case; return the ratios."""
    import numpy as np
    import torch

    from featuremap.engine.kernels import conv3d_valid
    from featuremap.engine.kernels.conv3d import choose_method

    rng = np.random.default_rng(0)
    print(f"{'case':<22}{'volume':>16}{'ours s':>9}{'torch s':>9}{'ratio':>7}  path")
    ratios = []
    for name, channels, filters, k, stride, dilation, groups, shape in CASES:
        if args.quick:
            shape = (shape[0] // 2, shape[1] // 2, shape[2] // 2)
        half = dilation * (k // 2)
        x = rng.standard_normal((1, channels, *shape), dtype=np.float32)
        weight = rng.standard_normal((filters, channels // groups, k, k, k), dtype=np.float32)
        xt, wt = torch.from_numpy(x), torch.from_numpy(weight)
        triple = (stride,) * 3, (dilation,) * 3

        def ours():
            padded = np.pad(x, ((0, 0), (0, 0), *((half, half),) * 3))
            return conv3d_valid(padded, weight, stride=triple[0], dilation=triple[1], groups=groups)

        def peer():
            return torch.nn.functional.conv3d(
                xt, wt, stride=stride, padding=half, dilation=dilation, groups=groups
            ).numpy()

        expected = torch.nn.functional.conv3d(
            xt.double(), wt.double(), stride=stride, padding=half, dilation=dilation, groups=groups
        ).numpy()
        error = float(np.abs(ours() - expected).max() / np.abs(expected).max())
        assert error < 1e-5, (name, error)
        best = _best_interleaved({"ours": ours, "torch": peer}, args.repeats)
        padded_shape = (1, channels, *(n + 2 * half for n in shape))
        path = choose_method(padded_shape, weight, *triple, groups)
        ratio = best["torch"] / best["ours"]
        ratios.append(ratio)
        volume = "x".join(map(str, shape))
        print(
            f"{name:<22}{volume:>16}{best['ours']:>9.4f}{best['torch']:>9.4f}{ratio:>7.2f}  {path}",
            flush=True,
        )
    return ratios


def gaussian_features(args) -> None:
    """Part (b): the Gaussian-derivative bank against scipy.ndimage.gaussian_filter."""
    import numpy as np
    import scipy.ndimage

    import featuremap.banks
    from featuremap.engine.kernels import conv3d_valid
    from featuremap.engine.kernels.conv3d import choose_method

    # SciPy's discrete Gaussians mirrored, zero-padded to the largest (29^3): see its docstring
    bank = featuremap.banks.get("gaussian", ndim=3, sigmas=list(SIGMAS), truncate=TRUNCATE)
    weight = bank.weight
    orders = [(f["sigma"], tuple(f["order"])) for f in bank.filters]
    radius = weight.shape[-1] // 2
    shape = (32, 128, 128) if args.quick else (64, 256, 256)
    x = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)

    def ours():
        return conv3d_valid(np.pad(x, radius)[None], weight)

    def peer():
        return np.stack(
            [
                scipy.ndimage.gaussian_filter(
                    x, sigma, order=order, mode="constant", truncate=TRUNCATE
                )
                for sigma, order in orders
            ]
        )

    result, expected = ours(), peer()
    scale = np.abs(expected).max(axis=(1, 2, 3), keepdims=True)
    error = float((np.abs(result - expected) / scale).max())
    best = _best_interleaved({"ours": ours, "scipy": peer}, max(1, args.repeats // 2))
    path = choose_method((1, 1, *(n + 2 * radius for n in shape)), weight, (1,) * 3, (1,) * 3, 1)
    print(
        f"gaussian bank J={weight.shape[0]} k={weight.shape[-1]} {'x'.join(map(str, shape))}: "
        f"ours {best['ours']:.3f} s ({path}), scipy gaussian_filter x{len(orders)} "
        f"{best['scipy']:.3f} s, ratio {best['scipy'] / best['ours']:.1f}, max error "
        f"{error:.1e} of each filter's largest response"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="half-size volumes (a smoke run)")
    args = parser.parse_args()
    _reexec_with_threads(args.threads, keep_pinning=False)

    import torch

    torch.set_num_threads(args.threads)
    print(f"cpu: {_cpu_model()}; {_blas_line()}; torch {torch.__version__}")
    print(f"threads={args.threads}, best of {args.repeats} interleaved; ratio = torch / ours")
    ratios = learned_layers(args)
    print(
        f"geometric mean ratio {math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}, "
        f"minimum {min(ratios):.2f}"
    )
    gaussian_features(args)


if __name__ == "__main__":
    main()
