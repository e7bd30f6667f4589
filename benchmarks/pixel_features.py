"""Pixel features (issue #20): ``featuremap.pixel_features`` against fastfilters2 and SciPy.

Four comparisons, each printed as seconds, a ratio, the goal and ok/MISSED:

(a) ilastik's full 2-D set (6 features at σ 0.3, 0.7, 1, 1.6, 3.5, 5, 10; 49 channels) on a
    float32 image, in memory, one thread, against ``fastfilters2.compute_filters`` at the same
    7 sigmas (its 7 channels each; it has no DoG). Goal: <= 1.5x fastfilters2's time.
(b) the 3-D set at one σ (10 channels) on a volume, one thread, against the SciPy equivalent:
    ``gaussian_filter`` (mirror, truncate 4) for G_σ (shared by the Gaussian and the DoG, with
    G_0.66σ), the three first and six second derivatives by ``gaussian_filter(order=...)``,
    each computed once and shared (gradient magnitude and structure tensor; LoG as the
    Hessian's trace), the products smoothed by ``gaussian_filter`` at σ/2, and
    ``numpy.linalg.eigvalsh`` in float64 for both tensors. Goal: <= 0.3x SciPy's time.
(c) a Zarr -> Zarr job (``featuremap.run`` with a ``features:`` pipeline, ilastik's set) on a
    LocalCluster of 2 single-threaded workers, against fastfilters2 computing the 7 sigmas on
    the same image in memory on one core. Goal: the job faster.
(d) the job's peak RSS per worker at two image sizes (fresh workers each). Goal: < 1.3x.

Timings are medians of ``--repeats`` interleaved runs after one untimed warm-up call of each
contender (the first call of a process also pays for fresh memory: on the development VM the
host hands out pages that were free for more than ~2 s slowly, see benchmarks/end_to_end.py).
The CPU and the BLAS kernel are printed first (PERFORMANCE.md: name them beside every figure).

Measured on the 2-core development VM (AMD EPYC, OpenBLAS Haswell kernel), 2026-12-05:

(a) ``--only 2d``: 0.98 s against fastfilters2's 0.98 s = 1.00x, ok (user time 0.79 s against
    0.47 s: fastfilters2 spends 0.53 s in page faults on its fresh outputs here). The VM's
    page faults swing from run to run: one run took 3.8 s (3.0 s of it system time) against
    1.0 s. With freed memory kept in the process (``MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=100000000000``: no page faults at all) 0.79 s against 0.40 s =
    1.95x, MISSED: featuremap's arithmetic (BLAS GEMMs over banded matrices, float64
    eigenvalues) costs about twice fastfilters2's (AVX2 loops folding symmetric kernels).
    After the features became one layer (halo 50): 1.015 s against 1.061 s = 0.96x, ok.
(b) ``--only 3d``: 2.80 s against SciPy's 28.6 s = 0.10x, ok; one layer: 2.66 s against 27.6 s.
(c) ``--only job``: 8192^2, 64 blocks: 64.7 s against fastfilters2's 19.1 s = 3.40x, MISSED;
    the I/O floor (the same 13 GB of lz4 Zarr written with no compute) is 29.9 s, itself 1.57x
    fastfilters2's time. 4096^2: 9.4 s against 4.3 s, floor 4.6 s; the workers spent 7.1 s
    user and 9.6 s system time (page faults on each block's fresh arrays, writes).
(d) ``--only rss``: 897 MiB at 4096^2, 903 MiB at 12288^2 = 1.01x, ok; one layer (no
    intermediate stage held whole): 683 MiB and 689 MiB = 1.01x.

Usage::

    python benchmarks/pixel_features.py            # 2048^2; 64 x 512^2 at σ 1.6; job 8192^2,
                                                   # 1024^2 chunks; RSS 4096^2 vs 12288^2
    python benchmarks/pixel_features.py --quick    # 1024^2; 32 x 256^2; job 2048^2, 512^2
                                                   # chunks; RSS 1024^2 vs 3072^2
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import threadpoolctl
from end_to_end import _verdict

ROOT = Path(__file__).resolve().parents[1]
#: ilastik's scales.
SIGMAS = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _median_interleaved(
    contenders: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, tuple[float, float, float]]:
    """``(seconds, user, system)`` per contender, medians: one untimed warm-up each, then
    ``repeats`` interleaved timed runs. The system time is mostly page faults on fresh memory."""
    for run in contenders.values():
        run()
    times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            (user, system), started = _cpu(), time.perf_counter()
            run()
            seconds = time.perf_counter() - started
            after = _cpu()
            times[name].append((seconds, after[0] - user, after[1] - system))
    medians = {}
    for name, values in times.items():
        seconds, user, system = (statistics.median(v[k] for v in values) for k in range(3))
        medians[name] = (seconds, user, system)
    return medians


def _line(label: str, measured: tuple[float, float, float]) -> str:
    seconds, user, system = measured
    return f"    {label:<35}{seconds:8.3f} s   (user {user:.2f} s, system {system:.2f} s)"


def fastfilters_all(image: np.ndarray) -> None:
    import fastfilters2

    for sigma in SIGMAS:
        fastfilters2.compute_filters(image, sigma)


def machine() -> str:
    blas = threadpoolctl.threadpool_info()
    kernels = ", ".join(f"{b['internal_api']} {b.get('architecture', '?')}" for b in blas)
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores; BLAS: {kernels}"


# -- (a) and (b): in memory, one thread ------------------------------------------------------------


def compare_2d(size: int, repeats: int) -> None:
    import featuremap

    image = np.random.default_rng(0).random((size, size), dtype=np.float32)
    with threadpoolctl.threadpool_limits(1):
        seconds = _median_interleaved(
            {
                "featuremap": lambda: featuremap.pixel_features(image),
                "fastfilters2": lambda: fastfilters_all(image),
            },
            repeats,
        )
    ratio = seconds["featuremap"][0] / seconds["fastfilters2"][0]
    print(f"\n(a) 2-D, {size}x{size}, ilastik's full set (49 channels), one thread")
    print(_line("featuremap.pixel_features", seconds["featuremap"]))
    print(_line("fastfilters2, 7 sigmas", seconds["fastfilters2"]))
    print(f"    ratio {ratio:.2f}x (goal <= 1.5x: {_verdict(ratio <= 1.5)})")
    cpu = seconds["featuremap"][1] / seconds["fastfilters2"][1]
    print(f"    user-time ratio {cpu:.2f}x (page faults on fresh memory left out)")


def scipy_3d(volume: np.ndarray, sigma: float) -> np.ndarray:
    """The 3-D set at one σ with SciPy only, every response computed once (module docstring)."""
    import scipy.ndimage as ndi

    def smooth(x: np.ndarray, s: float, order: Any = 0) -> np.ndarray:
        return ndi.gaussian_filter(x, s, order=order, mode="mirror", truncate=4.0)

    pairs = [(a, b) for a in range(3) for b in range(a, 3)]
    gaussian = smooth(volume, sigma)
    gradient = [smooth(volume, sigma, [int(a == b) for b in range(3)]) for a in range(3)]
    hessian = {
        (a, b): smooth(volume, sigma, [int(a == c) + int(b == c) for c in range(3)])
        for a, b in pairs
    }

    def eigenvalues(components: dict[tuple[int, int], np.ndarray]) -> list[np.ndarray]:
        tensor = np.empty((*volume.shape, 3, 3))
        for (a, b), values in components.items():
            tensor[..., a, b] = tensor[..., b, a] = values
        return list(np.moveaxis(np.linalg.eigvalsh(tensor)[..., ::-1], -1, 0).astype(np.float32))

    structure = {(a, b): smooth(gradient[a] * gradient[b], sigma / 2) for a, b in pairs}
    return np.stack(
        [
            gaussian,
            hessian[0, 0] + hessian[1, 1] + hessian[2, 2],
            np.sqrt(sum(g * g for g in gradient)),
            gaussian - smooth(volume, 0.66 * sigma),
            *eigenvalues(structure),
            *eigenvalues(hessian),
        ]
    )


def compare_3d(shape: tuple[int, int, int], sigma: float, repeats: int) -> None:
    import featuremap

    volume = np.random.default_rng(1).random(shape, dtype=np.float32)
    with threadpoolctl.threadpool_limits(1):
        ours = featuremap.pixel_features(volume, [sigma], ndim=3, kernels="scipy")
        theirs = scipy_3d(volume, sigma)
        scale = np.abs(theirs).max(axis=(1, 2, 3))
        error = float((np.abs(ours - theirs).max(axis=(1, 2, 3)) / scale).max())
        seconds = _median_interleaved(
            {
                "featuremap": lambda: featuremap.pixel_features(
                    volume, [sigma], ndim=3, kernels="scipy"
                ),
                "scipy": lambda: scipy_3d(volume, sigma),
            },
            repeats,
        )
    ratio = seconds["featuremap"][0] / seconds["scipy"][0]
    print(f"\n(b) 3-D, {'x'.join(map(str, shape))}, σ {sigma:g}, 10 channels, one thread")
    print(_line("featuremap (ndim=3, kernels=scipy)", seconds["featuremap"]))
    print(_line("scipy.ndimage + numpy eigvalsh", seconds["scipy"]))
    print(f"    largest difference (kernels='scipy'): {error:.1e} of the channel's largest value")
    print(f"    ratio {ratio:.2f}x (goal <= 0.3x: {_verdict(ratio <= 0.3)})")


# -- (c) and (d): the job --------------------------------------------------------------------------

PIPELINE = {"name": "pixel-features", "layers": [{"features": {"set": "ilastik"}}]}


def run_job(client: Any, source: str, output: str, prime: Callable[[], None]) -> dict[str, Any]:
    """The features job on ``source``; seconds, blocks and the workers' peak RSS."""
    import end_to_end

    import featuremap

    client.run(end_to_end._count_reads, str(Path(source).resolve()))
    prime()
    before = client.run(_cpu)
    started = time.perf_counter()
    summary = featuremap.run(PIPELINE, input=source, output=output, client=client, overwrite=True)
    seconds = time.perf_counter() - started
    cpu = client.run(_cpu)
    after = client.run(end_to_end._reads_and_rss)
    return {
        "seconds": seconds,
        "blocks": summary.blocks_total,
        "peak_rss": max(rss for _, rss in after.values()),
        "user": sum(cpu[w][0] - before[w][0] for w in cpu),
        "system": sum(cpu[w][1] - before[w][1] for w in cpu),
    }


def warm_up(client: Any, scratch: Path) -> None:
    """A tiny job first: worker imports and the kernels' plans are not timed."""
    import end_to_end

    source = end_to_end.make_input(scratch / "warm.zarr", 256, 128)
    run_job(client, source, str(scratch / "warm-out.zarr"), lambda: None)


def compare_job(
    scratch: Path, size: int, chunk: int, workers: int, repeats: int, prime: bool
) -> None:
    import end_to_end
    import zarr

    source = end_to_end.make_input(scratch / f"input{size}.zarr", size, chunk)
    output = scratch / "features.zarr"
    output_bytes = 49 * size * size * 4

    def primer() -> None:
        if prime:
            end_to_end.prime_pages(scratch, output_bytes)

    jobs, floors = [], []
    floor_output = scratch / "floor.zarr"
    cluster, client = end_to_end._cluster(workers)
    with cluster, client:
        warm_up(client, scratch)
        for _ in range(repeats):
            end_to_end._fresh([output, floor_output])
            jobs.append(run_job(client, source, str(output), primer))
            end_to_end._fresh([output, floor_output])
            floors.append(
                end_to_end.run_io_floor(client, source, str(floor_output), 49, chunk, primer)[
                    "seconds"
                ]
            )
    end_to_end._fresh([output, floor_output])
    image = np.asarray(zarr.open_array(source, mode="r")[...])
    with threadpoolctl.threadpool_limits(1):
        fastfilters_all(image[:512, :512])
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            fastfilters_all(image)
            runs.append(time.perf_counter() - started)
    job = statistics.median(run["seconds"] for run in jobs)
    memory, floor = statistics.median(runs), statistics.median(floors)
    print(
        f"\n(c) job, {size}x{size} float32 Zarr ({chunk}^2 chunks) -> 49 x {size}^2 Zarr "
        f"(lz4), {jobs[0]['blocks']} blocks, {workers} workers x 1 thread"
    )
    user, system = (statistics.median(run[key] for run in jobs) for key in ("user", "system"))
    print(
        f"    featuremap.run (features: ilastik) {job:8.3f} s   (workers: user {user:.1f} s, "
        f"system {system:.1f} s)"
    )
    print(f"    fastfilters2 in memory, one core   {memory:8.3f} s")
    print(f"    I/O floor (same output, no compute) {floor:7.3f} s")
    ratio = job / memory
    print(
        f"    ratio {ratio:.2f}x (goal < 1x: {_verdict(ratio < 1)}); job / I/O floor {job / floor:.2f}x"
    )


def rss_growth(scratch: Path, sizes: tuple[int, int], chunk: int, workers: int) -> None:
    import end_to_end

    peaks = []
    for side in sizes:
        source = end_to_end.make_input(scratch / f"rss{side}.zarr", side, chunk)
        output = scratch / f"rss{side}-out.zarr"
        cluster, client = end_to_end._cluster(workers)  # fresh workers: a clean peak
        with cluster, client:
            warm_up(client, scratch)
            peaks.append(run_job(client, source, str(output), lambda: None)["peak_rss"])
        shutil.rmtree(output, ignore_errors=True)
        shutil.rmtree(source, ignore_errors=True)
    end_to_end.print_rss_growth(
        "(d) job peak RSS per worker", [f"{side}^2" for side in sizes], peaks
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes everywhere")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument("--job-repeats", type=int, default=1, help="timed runs of the job")
    parser.add_argument("--sigma", type=float, default=1.6, help="σ of the 3-D comparison")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--job-size", type=int, default=None, help="image side of the job (c)")
    parser.add_argument(
        "--only", nargs="+", choices=["2d", "3d", "job", "rss"], help="run only these parts"
    )
    parser.add_argument("--no-prime", action="store_true", help="see benchmarks/end_to_end.py")
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    parts = set(args.only or ["2d", "3d", "job", "rss"])
    size_2d, shape_3d = (1024, (32, 256, 256)) if args.quick else (2048, (64, 512, 512))
    job_size, chunk = (2048, 512) if args.quick else (8192, 1024)
    job_size = args.job_size or job_size
    rss_sizes = (1024, 3072) if args.quick else (4096, 12288)
    print(machine())
    print(f"medians of {args.repeats} interleaved runs after one warm-up call each")
    if "2d" in parts:
        compare_2d(size_2d, args.repeats)
    if "3d" in parts:
        compare_3d(shape_3d, args.sigma, args.repeats)
    if parts & {"job", "rss"}:
        scratch = Path(args.dir or tempfile.mkdtemp(prefix="featuremap-bench-"))
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            if "job" in parts:
                compare_job(
                    scratch, job_size, chunk, args.workers, args.job_repeats, not args.no_prime
                )
            if "rss" in parts:
                rss_growth(scratch, rss_sizes, chunk, args.workers)
        finally:
            if args.dir is None:
                shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    # the workers import featuremap and end_to_end's helpers
    paths = [str(ROOT), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    main()
