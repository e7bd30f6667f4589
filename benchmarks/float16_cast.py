"""The float32 -> float16 cast of a stored block: NumPy's ``astype`` against featuremap's compiled
cast (:mod:`featuremap.engine.cast`, numba, the ``fast`` extra), ns a value, and whether the
two agree bit for bit (NaN payloads aside).

Goal (issue #24): well under NumPy's 2.5-3 ns a value (a scalar loop in NumPy 2.4), so that a
float16 job is >= 1.5x faster than a float32 one end to end (``end_to_end.py``).

Then one output block as a job stores it -- a (16, 1024, 1024) float32 block of 7x7 responses to
noise, cast and written to a local Zarr array (crc32c; one chunk per feature, one shard) -- in CPU
seconds of this process (wall seconds too), float32 / float16 x codec none / lz4, float16 through
NumPy's cast as well: what the codec and the cast cost a block task, apart from the cluster.

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
    block_writes(args.repeats)


def _block() -> np.ndarray:
    """A (16, 1024, 1024) block of 7x7 responses to noise, as the end-to-end job computes."""
    from end_to_end import bank

    from featuremap.engine.kernels import conv2d_valid

    image = np.random.default_rng(2).random((1, 1030, 1030), dtype=np.float32)
    return np.ascontiguousarray(conv2d_valid(image, bank(16, 7).weight))


def block_writes(repeats: int) -> None:
    """CPU and wall seconds to cast and write one block, per dtype, codec and cast."""
    import tempfile

    import zarr

    from featuremap.engine.cast import cast_to
    from featuremap.io import feature_codecs

    block = _block()
    variants = [
        ("float32", "none", "featuremap"),
        ("float32", "lz4", "featuremap"),
        ("float16", "none", "featuremap"),
        ("float16", "none", "numpy"),
        ("float16", "lz4", "featuremap"),
    ]
    cpu: dict[tuple[str, str, str], list[float]] = {v: [] for v in variants}
    wall: dict[tuple[str, str, str], list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="featuremap-block-") as folder:
        for repeat in range(repeats + 1):  # the first round warms up, untimed
            for dtype, codec, cast in variants:
                array = zarr.create_array(
                    f"{folder}/{dtype}-{codec}-{cast}.zarr",
                    shape=block.shape,
                    chunks=(1, *block.shape[1:]),
                    shards=block.shape,
                    dtype=dtype,
                    compressors=feature_codecs(codec),
                    config={"write_empty_chunks": True},
                    overwrite=True,
                )
                started, started_cpu = time.perf_counter(), time.process_time()
                stored = cast_to(block, dtype) if cast == "featuremap" else block.astype(dtype)
                array[...] = stored
                if repeat:
                    wall[dtype, codec, cast].append(time.perf_counter() - started)
                    cpu[dtype, codec, cast].append(time.process_time() - started_cpu)
    print(f"one (16, 1024, 1024) block cast and written, median of {repeats} interleaved runs:")
    print(f"{'dtype':<8}{'codec':<6}{'cast':<12}{'CPU s':>8}{'wall s':>8}")
    for variant in variants:
        dtype, codec, cast = variant
        cpu_s, wall_s = statistics.median(cpu[variant]), statistics.median(wall[variant])
        print(f"{dtype:<8}{codec:<6}{cast:<12}{cpu_s:8.3f}{wall_s:8.3f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    main()
