"""The float32 -> float16 cast of a stored block: NumPy's ``astype`` against featuremap's compiled
cast (:mod:`featuremap.engine.cast`, numba, the ``fast`` extra), ns a value, and whether the
two agree bit for bit (NaN payloads aside).

Goal (issue #24): well under NumPy's 2.5-3 ns a value (a scalar loop in NumPy 2.4), so that a
float16 job is >= 1.5x faster than a float32 one end to end (``end_to_end.py``).

Usage::

    python benchmarks/float16_cast.py              # 64 MiB of float32, median of 7 interleaved runs
    python benchmarks/float16_cast.py --mib 16 --repeats 11
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _seconds(function, values: np.ndarray) -> float:
    started = time.perf_counter()
    function(values)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=64, help="float32 MiB cast per run")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    from end_to_end import host_line

    from featuremap.engine.cast import fast_float16_available, to_float16

    print(host_line())
    values = np.random.default_rng(0).standard_normal(args.mib * 2**18).astype(np.float32)
    values *= np.float32(100)  # feature-like magnitudes: normals, a few float16 subnormals
    variants = {"numpy astype": lambda v: v.astype(np.float16), "featuremap": to_float16}
    times: dict[str, list[float]] = {name: [] for name in variants}
    to_float16(values[:8192])  # compile or load the cached loop outside the timing
    for _ in range(args.repeats):  # interleaved: a busy host slows both alike
        for name, function in variants.items():
            times[name].append(_seconds(function, values))
    ours, numpy = to_float16(values), values.astype(np.float16)
    nan = np.isnan(numpy)
    same = np.array_equal(np.isnan(ours), nan) and np.array_equal(
        ours.view(np.uint16)[~nan], numpy.view(np.uint16)[~nan]
    )
    print(
        f"{args.mib} MiB float32, median of {args.repeats} interleaved runs; compiled cast "
        f"{'on' if fast_float16_available() else 'OFF (numba missing): both are NumPy'}"
    )
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    for name, seconds in medians.items():
        print(f"{name:<14} {seconds * 1e9 / values.size:6.2f} ns/value")
    speedup = medians["numpy astype"] / medians["featuremap"]
    print(f"featuremap vs numpy: {speedup:.1f}x faster; bit-identical (NaN aside): {same}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    main()
