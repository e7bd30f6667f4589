"""End to end: a float32 Zarr image -> 16 filters 7x7 "same" -> a (16, H, W) Zarr store.

Compares, at each image size, on the same ``LocalCluster``::

    featuremap           featuremap.jobs.run.run_layers (one fused task per output block) with
                         the default ``output.codec: auto`` (the codec chosen from a sample:
                         none for these noisy features, crc32c kept)
    featuremap lz4       the same job with ``output.codec: lz4`` (Blosc-LZ4 + shuffle + crc32c,
                         the default before ``auto``): its output bytes are auto's reference
    featuremap float16   the default job with ``output.dtype: float16``
    dask-image           dask_image.ndfilters.correlate once per filter, stacked, stored (LZ4)
    I/O floor            read the input, write a float32 output of the same size (LZ4), no
                         compute

Goals (issue #13, #24): featuremap >= 4x dask-image at 4096^2 and 8192^2 with the default
codec, its output bytes within 15 % of LZ4's, <= 1.2x the I/O floor, float16 >= 1.5x faster
than float32; peak RSS per worker 12288^2 vs 4096^2 < 1.3x. The CPU, numpy's BLAS (library,
kernel, threads) and the OpenBLAS environment are printed first. Also printed:
the input bytes the workers read against the stored input (each block task reads its own window,
halo included, from the Zarr chunks, through each worker's decoded-chunk cache: the read
amplification). Bytes are counted on the workers by a wrapper around the Zarr stores' ``get``.

Memory pages (``--no-prime`` to switch off): right before each timed run, as many bytes as the
run's output are written to a scratch file and deleted, so that every variant writes into pages
the guest touched a moment ago. On the development VM, pages left free for more than ~2 s are
handed back to the host (virtio-balloon free page reporting) and the next write into them pays
the host's first touch: 60 MB files took 12 ms each right after a delete, 59, 78 and 97 ms 3, 6
and 10 s later. Unprimed, a variant's writes cost 95-250 ms per 64 MiB block depending on what
the run before it had freed, and the fastest and slowest variants swapped places from one repeat
to the next. Priming covers a run's first seconds only (the reporting catches up after ~2 s),
so it evens out the 4096^2 runs better than the 8192^2 ones.

Usage::

    python benchmarks/end_to_end.py              # 4096^2 and 8192^2, 1024^2 chunks; RSS 4096^2 vs 12288^2
    python benchmarks/end_to_end.py --quick      # 2048^2, 512^2 chunks; RSS 1024^2 vs 3072^2
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr

from featuremap.engine.layers import ConvLayer
from featuremap.io import feature_codecs
from featuremap.io.sizing import OutputOptions


def make_input(path: Path, size: int, chunk: int, seed: int = 0) -> str:
    """Random float32 ``size x size`` image in ``chunk x chunk`` chunks, written a row at a time."""
    array = zarr.create_array(
        str(path), shape=(size, size), chunks=(chunk, chunk), dtype="float32", overwrite=True
    )
    rng = np.random.default_rng(seed)
    for top in range(0, size, chunk):
        rows = min(chunk, size - top)
        array[top : top + rows] = rng.random((rows, size), dtype=np.float32)
    return str(path)


def prime_pages(scratch: Path, nbytes: int) -> None:
    """Write ``nbytes`` to a scratch file and delete it: the freed pages are the ones the next
    writes get, while the guest still owns them (module docstring, "Memory pages")."""
    piece = bytes(64 * 2**20)
    path = scratch / "prime.bin"
    with open(path, "wb") as scratch_file:
        for _ in range(max(1, -(-nbytes // len(piece)))):
            scratch_file.write(piece)
    path.unlink()


def stored_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _count_reads(prefix: str) -> None:
    """On a worker: count the bytes Zarr stores hand out for keys under ``prefix`` (a wrapper
    around ``get``; the total is kept on the store classes, read back by :func:`_reads_and_rss`),
    and the chunk files featuremap reads itself (:mod:`featuremap.io.chunk_files`), counted on
    ``LocalStore`` too."""
    from zarr.storage import FsspecStore, LocalStore

    from featuremap.io import chunk_files

    if not hasattr(chunk_files, "_bench_original_file_bytes"):
        chunk_files._bench_original_file_bytes = chunk_files.file_bytes

        def file_bytes(path):
            value = chunk_files._bench_original_file_bytes(path)
            if value is not None and str(path).startswith(LocalStore._bench_prefix):
                LocalStore._bench_bytes += len(value)
            return value

        chunk_files.file_bytes = file_bytes

    for store_class in (FsspecStore, LocalStore):
        if not hasattr(store_class, "_bench_original_get"):
            store_class._bench_original_get = store_class.get

            async def get(self, key, prototype=None, byte_range=None, _cls=store_class):
                value = await _cls._bench_original_get(self, key, prototype, byte_range)
                where = f"{getattr(self, 'path', '')}{getattr(self, 'root', '')}"
                if value is not None and where.startswith(_cls._bench_prefix):
                    _cls._bench_bytes += len(value)
                return value

            store_class.get = get
        store_class._bench_prefix, store_class._bench_bytes = prefix, 0


def _reads_and_rss() -> tuple[int, int]:
    """Input bytes read since :func:`_count_reads` and peak RSS in bytes; runs on each worker."""
    from zarr.storage import FsspecStore, LocalStore

    read = sum(getattr(c, "_bench_bytes", 0) for c in (FsspecStore, LocalStore))
    return read, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (run on each worker too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_snapshot(client) -> tuple[dict, float]:
    return client.run(_cpu_seconds), _cpu_seconds()


def _cpu_since(client, snapshot: tuple[dict, float]) -> float:
    """CPU seconds of the workers and of this process (client and scheduler) since
    ``snapshot``: what a run cost whatever else the host was running."""
    workers, local = snapshot
    now = client.run(_cpu_seconds)
    return sum(now[name] - workers.get(name, 0.0) for name in now) + _cpu_seconds() - local


def _cluster(workers: int):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    return cluster, Client(cluster)


def bank(filters: int, kernel: int) -> ConvLayer:
    weight = (
        np.random.default_rng(1).standard_normal((filters, 1, kernel, kernel)).astype(np.float32)
    )
    return ConvLayer.create(weight, padding="same")


def warm_up(client, scratch: Path, layer: ConvLayer, dtype: str = "float32") -> None:
    """A tiny job first, so worker imports (torch, zarr codecs; numba's float16 cast for a
    float16 job) are neither timed nor counted."""
    from featuremap.jobs.run import run_layers

    source = make_input(scratch / "warm.zarr", 128, 64)
    if dtype == "float16":  # the tiny job reaches one worker: load the cast on every one
        client.run(_load_float16_cast)
    run_layers(
        [layer],
        input=source,
        output=str(scratch / "warm-out.zarr"),
        client=client,
        overwrite=True,
        options=OutputOptions(dtype=dtype),
    )


def _load_float16_cast() -> bool:
    from featuremap.engine.cast import fast_float16_available

    return fast_float16_available()


def _no_priming() -> None:
    return None


def run_featuremap(
    client,
    source: str,
    output: str,
    layer: ConvLayer,
    dtype: str = "float32",
    prime: Callable[[], None] = _no_priming,
    codec: str = "auto",
) -> dict:
    from featuremap.jobs.run import run_layers

    warm_up(client, Path(output).parent, layer, dtype)
    client.run(_count_reads, str(Path(source).resolve()))
    prime()
    cpu = _cpu_snapshot(client)
    started = time.perf_counter()
    summary = run_layers(
        [layer],
        input=source,
        output=output,
        client=client,
        overwrite=True,
        options=OutputOptions(dtype=dtype, codec=codec),
    )
    seconds = time.perf_counter() - started
    cpu_seconds = _cpu_since(client, cpu)
    after = client.run(_reads_and_rss)
    read = sum(bytes_read for bytes_read, _ in after.values())
    return {
        "seconds": seconds,
        "cpu": cpu_seconds,
        "stored": stored_bytes(str(Path(output) / "features")),
        "codec": zarr.open_group(output, mode="r").attrs["featuremap"]["output"]["codec"],
        "blocks": summary.blocks_total,
        "bytes_read": read,
        "peak_rss": max(rss for _, rss in after.values()),
    }


def _output_array(path: str, shape: tuple, chunks: tuple) -> zarr.Array:
    return zarr.create_array(
        path,
        shape=shape,
        chunks=chunks,
        dtype="float32",
        overwrite=True,
        compressors=feature_codecs(),
        config={"write_empty_chunks": True},
    )


def run_dask_image(
    client, source: str, output: str, layer: ConvLayer, chunk: int, prime: Callable[[], None]
) -> dict:
    import dask.array as da
    from dask_image.ndfilters import correlate

    prime()
    cpu = _cpu_snapshot(client)
    started = time.perf_counter()
    x = da.from_zarr(source)
    maps = [correlate(x, w[0], mode="constant", cval=0.0) for w in layer.weight]
    stacked = da.stack(maps).rechunk((len(maps), chunk, chunk))
    da.store(
        stacked,
        _output_array(output, stacked.shape, (len(maps), chunk, chunk)),
        lock=False,
        compute=True,
    )
    return {"seconds": time.perf_counter() - started, "cpu": _cpu_since(client, cpu)}


def run_io_floor(
    client, source: str, output: str, filters: int, chunk: int, prime: Callable[[], None]
) -> dict:
    import dask.array as da

    prime()
    cpu = _cpu_snapshot(client)
    started = time.perf_counter()
    x = da.from_zarr(source)
    copies = da.broadcast_to(x[None], (filters, *x.shape)).rechunk((filters, chunk, chunk))
    # copies of the input bytes: same size and about the same compressibility as the features
    da.store(
        copies + 0,
        _output_array(output, copies.shape, (filters, chunk, chunk)),
        lock=False,
        compute=True,
    )
    return {"seconds": time.perf_counter() - started, "cpu": _cpu_since(client, cpu)}


def _fresh(outputs) -> None:
    """Remove earlier outputs and flush dirty pages, so no run pays for another's writeback."""
    for path in outputs:
        shutil.rmtree(path, ignore_errors=True)
    os.sync()


def compare(
    client, scratch: Path, size: int, chunk: int, layer: ConvLayer, repeats: int, prime: bool
) -> dict:
    """Interleaved runs of every variant at one size; medians, and featuremap's read bytes."""
    source = make_input(scratch / f"input{size}.zarr", size, chunk)
    outputs = {name: scratch / f"{name}.zarr" for name in ("fm", "fm_lz4", "fm16", "di", "floor")}
    runs: dict[str, list] = {name: [] for name in outputs}
    filters = layer.weight.shape[0]
    output_bytes = filters * size * size * 4
    primer = functools.partial(prime_pages, scratch, output_bytes) if prime else _no_priming
    variants: dict[str, Callable[[], dict]] = {
        "fm": lambda: run_featuremap(client, source, str(outputs["fm"]), layer, prime=primer),
        "fm_lz4": lambda: run_featuremap(
            client, source, str(outputs["fm_lz4"]), layer, prime=primer, codec="lz4"
        ),
        "fm16": lambda: run_featuremap(
            client, source, str(outputs["fm16"]), layer, dtype="float16", prime=primer
        ),
        "di": lambda: run_dask_image(client, source, str(outputs["di"]), layer, chunk, primer),
        "floor": lambda: run_io_floor(
            client, source, str(outputs["floor"]), filters, chunk, primer
        ),
    }
    names = list(variants)
    for repeat in range(repeats):  # interleaved, so drift in the machine hits all alike
        # each repeat starts with another variant: no variant always follows the same one
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            _fresh(outputs.values())
            runs[name].append(variants[name]())
    _fresh(outputs.values())
    row = {"size": size, "repeats": repeats}
    for name, variant_runs in runs.items():
        row[name] = statistics.median(run["seconds"] for run in variant_runs)
        row[f"{name}_cpu"] = statistics.median(run["cpu"] for run in variant_runs)
    return {
        **row,
        "codec": runs["fm"][0]["codec"],
        "codec16": runs["fm16"][0]["codec"],
        "bytes": runs["fm"][0]["stored"],
        "bytes_lz4": runs["fm_lz4"][0]["stored"],
        "blocks": runs["fm"][0]["blocks"],
        "read": runs["fm"][0]["bytes_read"] / stored_bytes(source),
    }


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(row: dict) -> None:
    size = row["size"]
    print(f"\n{size}x{size} ({row['blocks']} blocks)")
    print(f"{'variant':<26} {'seconds':>8} {'vs floor':>9} {'CPU s':>8}")
    for name, key in (
        ("I/O floor", "floor"),
        (f"featuremap ({row['codec']})", "fm"),
        ("featuremap lz4", "fm_lz4"),
        (f"featuremap float16 ({row['codec16']})", "fm16"),
        ("dask-image", "di"),
    ):
        print(
            f"{name:<26} {row[key]:8.2f} {row[key] / row['floor']:8.2f}x {row[key + '_cpu']:8.2f}"
        )
    speedup, floor = row["di"] / row["fm"], row["fm"] / row["floor"]
    half, bytes_ratio = row["fm"] / row["fm16"], row["bytes"] / row["bytes_lz4"]
    cpu_speedup = row["di_cpu"] / row["fm_cpu"]
    print(
        f"featuremap vs dask-image: {speedup:.2f}x faster (goal >= 4x: {_verdict(speedup >= 4)}); "
        f"CPU seconds {cpu_speedup:.2f}x fewer"
    )
    print(
        f"featuremap auto ({row['codec']}) vs lz4: {row['fm_lz4'] / row['fm']:.2f}x faster "
        f"({row['fm_lz4_cpu'] / row['fm_cpu']:.2f}x fewer CPU seconds), "
        f"output bytes {row['bytes'] / 2**20:.0f} vs {row['bytes_lz4'] / 2**20:.0f} MiB = "
        f"{bytes_ratio:.2f}x (goal <= 1.15x: {_verdict(bytes_ratio <= 1.15)})"
    )
    print(f"featuremap vs I/O floor: {floor:.2f}x (goal <= 1.2x: {_verdict(floor <= 1.2)})")
    print(
        f"float16 vs float32: {half:.2f}x faster (goal >= 1.5x: {_verdict(half >= 1.5)}); "
        f"CPU seconds {row['fm_cpu'] / row['fm16_cpu']:.2f}x fewer"
    )
    print(f"input bytes read / stored input: {row['read']:.2f}x")


def rss_growth(scratch: Path, sizes: tuple[int, int], chunk: int, layer: ConvLayer, workers: int):
    peaks = []
    for side in sizes:
        source = make_input(scratch / f"rss{side}.zarr", side, chunk)
        cluster, client = _cluster(workers)  # fresh workers: a clean peak
        with cluster, client:
            output = str(scratch / f"rss{side}-out.zarr")
            peaks.append(run_featuremap(client, source, output, layer)["peak_rss"])
        shutil.rmtree(scratch / f"rss{side}-out.zarr", ignore_errors=True)
        shutil.rmtree(source, ignore_errors=True)
    print_rss_growth("peak RSS per worker", [f"{side}^2" for side in sizes], peaks)


def print_rss_growth(title: str, names: list[str], peaks: list[int]) -> None:
    """The peak RSS of two runs (``names``) and its growth against the goal (< 1.3x)."""
    growth = peaks[1] / peaks[0]
    print(
        f"\n{title}: {names[0]} {peaks[0] / 2**20:.0f} MiB, {names[1]} "
        f"{peaks[1] / 2**20:.0f} MiB = {growth:.2f}x (goal < 1.3x: {_verdict(growth < 1.3)})"
    )


def host_line() -> str:
    """The CPU, numpy's BLAS (library, kernel, threads), the OpenBLAS environment and whether
    the float16 cast is compiled, for the line above every figure."""
    from kernels import _blas_line, _cpu_model

    from featuremap.engine.cast import fast_float16_available

    openblas = " ".join(
        f"{name}={value}"
        for name, value in sorted(os.environ.items())
        if name.startswith("OPENBLAS")
    )
    return (
        f"cpu: {_cpu_model()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; "
        f"{_blas_line()}; env: {openblas or '(no OPENBLAS_*)'}; "
        f"float16 cast: {'numba' if fast_float16_available() else 'numpy'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192], help="image sides")
    parser.add_argument("--chunk", type=int, default=1024, help="input chunk side (default 1024)")
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--kernel", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--quick", action="store_true", help="2048^2 / 512^2 chunks, RSS 1024^2 vs 3072^2"
    )
    parser.add_argument("--skip-rss", action="store_true", help="skip the RSS scaling runs")
    parser.add_argument(
        "--no-prime",
        action="store_true",
        help="do not write and delete the output's size before each timed run (docstring)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each variant (median)"
    )
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    sizes, chunk = ([2048], 512) if args.quick else (args.sizes, args.chunk)
    rss_sizes = (1024, 3072) if args.quick else (4096, 12288)
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="featuremap-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    layer = bank(args.filters, args.kernel)
    print(host_line())
    print(
        f"float32 input, {chunk}^2 chunks, {args.filters} filters {args.kernel}x{args.kernel} "
        f"'same', LocalCluster {args.workers} workers x 1 thread, featuremap's output codec "
        f"auto (lz4 where named), the others' blosc-lz4+shuffle+crc32c; median of "
        f"{args.repeats} interleaved runs, "
        "outputs removed and dirty pages synced before each"
        + ("" if args.no_prime else ", memory pages primed with the output's size")
    )
    try:
        cluster, client = _cluster(args.workers)
        with cluster, client:
            for size in sizes:
                report(
                    compare(client, scratch, size, chunk, layer, args.repeats, not args.no_prime)
                )
        if not args.skip_rss:
            rss_growth(scratch, rss_sizes, chunk, layer, args.workers)
    finally:
        if args.dir is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    main()
