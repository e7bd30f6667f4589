"""Viewer reads and pyramids (issue #21): what a viewer pays to show one feature, and what the
multiscale levels cost the job.

``read``
    A real job writes a 64-feature float16 result of a 1024^2 image (64 random 3x3 filters),
    once in the default layout (one feature per chunk, the block one shard) and once with
    ``shards: false`` (every feature in the block's one chunk, the layout before #21). Printed:
    the median time to read one feature plane of each, against reading one plane of the source
    (float32, one 1024^2 chunk). Goal: default / source <= 3.
``job``
    A job (float32, 1024^2 input chunks) at ``--size``^2, plain and with ``output.pyramid:
    {levels: auto}``, alternated, ``--repeats`` each. Goal: pyramid / plain <= 1.2. ``--layers
    conv``: 16 filters 7x7 'same' (PERFORMANCE.md's I/O-bound anchor: ~60 ms of compute per
    1024^2 block against ~150 ms to encode and write it); ``--layers features``: ilastik's
    gaussian, gradient magnitude and Hessian eigenvalues at sigma 1, 3.5 (8 features, as much
    compute as a real feature job).

Times are medians over repeats on one ``LocalCluster`` (2 worker processes x 1 thread); compare
the ratios, not the seconds (PERFORMANCE.md).

Usage::

    python benchmarks/pyramid.py read
    python benchmarks/pyramid.py job --size 8192
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from featuremap.engine.layers import ConvLayer
from featuremap.io.pyramid import PyramidOptions
from featuremap.io.sizing import OutputOptions


def _input(path: Path, size: int, chunk: int) -> str:
    """A random float32 ``size^2`` image in ``chunk^2`` chunks, written a row of chunks at a time."""
    array = zarr.create_array(
        str(path), shape=(size, size), chunks=(chunk, chunk), dtype="float32", overwrite=True
    )
    rng = np.random.default_rng(0)
    for top in range(0, size, chunk):
        array[top : top + chunk] = rng.random((min(chunk, size - top), size), dtype=np.float32)
    return str(path)


def _bank(filters: int, kernel: int) -> ConvLayer:
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((filters, 1, kernel, kernel)).astype(np.float32)
    return ConvLayer.create(weight, padding="same")


def _median_seconds(action: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _job(client: Any, source: str, output: str, layers: Any, options: OutputOptions) -> None:
    from featuremap.jobs.run import run_layers

    if isinstance(layers, ConvLayer):
        layers = [layers]
    run_layers(layers, input=source, output=output, client=client, overwrite=True, options=options)


def _features_layers() -> Any:
    from featuremap.pipeline.pipeline import load_pipeline

    features = ["gaussian", "gradient_magnitude", "hessian_eigenvalues"]
    spec = {"features": {"set": "ilastik", "sigmas": [1.0, 3.5], "features": features}}
    return load_pipeline({"layers": [spec]}).build_layers(1)


def bench_read(client: Any, scratch: Path, repeats: int) -> None:
    source = _input(scratch / "in.zarr", 1024, 1024)
    layer = _bank(64, 3)
    layouts = {
        "default": OutputOptions(dtype="float16"),
        "shards: false": OutputOptions(dtype="float16", shards=None),
    }
    plane = _median_seconds(lambda: zarr.open_array(source, mode="r")[...], repeats)
    print(f"source plane (1024^2 float32, one chunk): {plane * 1e3:8.1f} ms")
    for name, options in layouts.items():
        output = str(scratch / f"{name.replace(':', '').replace(' ', '-')}.zarr")
        _job(client, source, output, layer, options)
        features = zarr.open_group(output, mode="r")["features"]

        def read_one(features: Any = features) -> None:
            features[17]

        seconds = _median_seconds(read_one, repeats)
        print(
            f"one feature plane, {name:>13} (chunks {features.chunks}, shards {features.shards}):"
            f" {seconds * 1e3:8.1f} ms  = {seconds / plane:5.2f} x the source plane"
        )


def _worker_cpu() -> float:
    """This process's CPU seconds (user + system); runs on each worker."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_seconds(client: Any) -> float:
    """CPU seconds spent so far by the workers and this process (the job's driver: markers,
    the pyramid's tail pass); less sensitive than wall time to other work on the machine."""
    return sum(client.run(_worker_cpu).values()) + time.process_time()


def bench_job(client: Any, scratch: Path, size: int, repeats: int, layers: str) -> None:
    source = _input(scratch / "in.zarr", size, 1024)
    layer = _bank(16, 7) if layers == "conv" else _features_layers()
    variants = {
        "plain": OutputOptions(),
        "pyramid auto": OutputOptions(pyramid=PyramidOptions()),
    }
    _job(
        client,
        _input(scratch / "warm.zarr", 256, 128),
        str(scratch / "warm-out.zarr"),
        layer,
        OutputOptions(pyramid=PyramidOptions(2)),
    )  # worker imports, not timed
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, options in variants.items():  # alternated: drift of a loaded machine is shared
            cpu_before, started = _cpu_seconds(client), time.perf_counter()
            _job(client, source, str(scratch / "out.zarr"), layer, options)
            times[name].append(time.perf_counter() - started)
            cpu[name].append(_cpu_seconds(client) - cpu_before)
    plain = statistics.median(times["plain"])
    levels = zarr.open_group(str(scratch / "out.zarr"), mode="r").attrs["featuremap"]["output"]
    for name, values in times.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:>13}: {median:7.2f} s (runs {runs})  = {median / plain:4.2f} x plain")
    # each pyramid run against the plain run just before it: a loaded machine drifts slower
    # than one pair takes
    pairs = [p / q for p, q in zip(times["pyramid auto"], times["plain"], strict=True)]
    print(
        f"pyramid / plain, run by run: {', '.join(f'{r:.2f}' for r in pairs)}; "
        f"median {statistics.median(pairs):.2f}"
    )
    cpu_plain, cpu_pyramid = (statistics.median(cpu[name]) for name in variants)
    print(
        f"CPU seconds (workers + driver), median: plain {cpu_plain:.2f}, pyramid "
        f"{cpu_pyramid:.2f} = {cpu_pyramid / cpu_plain:4.2f} x plain"
    )
    print(f"pyramid: {levels['pyramid']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["read", "job"])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--layers", choices=["conv", "features"], default="conv")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    with (
        tempfile.TemporaryDirectory(prefix="featuremap-pyramid-") as folder,
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        if args.what == "read":
            bench_read(client, Path(folder), max(args.repeats, 5))
        else:
            bench_job(client, Path(folder), args.size, args.repeats, args.layers)


if __name__ == "__main__":
    main()
