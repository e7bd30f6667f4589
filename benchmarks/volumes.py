"""Volumes end to end: a float32 Zarr volume -> a 3-D Gaussian-derivative bank -> a Zarr store.

The bank is ``gaussian`` with ``ndim: 3`` (orders up to 2 along z, y, x: 10 filters per scale) at
sigmas 1, 1.6 and 3.5 voxels, ``same`` padding with ``reflect`` borders (SciPy's ``mirror``).
On the same ``LocalCluster`` (2 workers, 1 thread each) and the same output codec::

    featuremap   featuremap.jobs.run.run_layers (one fused task per 3-D output block)
    dask-image   dask_image.ndfilters.gaussian_filter once per filter (its order), stacked, stored
    I/O floor    read the volume, write as many float32 bytes (copies of it), no compute

The output (30 float32 features of 16.8 M voxels, 2 GB) makes the I/O floor the larger part of
featuremap's time on 2 cores, so the ratio to dask-image is bounded by dask-image / floor.

Goal (issue #19): featuremap >= 5x dask-image on 64 x 512 x 512. Then the peak RSS per worker of
featuremap's job on two volume sizes (goal: flat, < 1.3x for 4x the voxels).

Before each timed run the output's size is written to a scratch file and deleted (``end_to_end.py``'s
priming: on the development VM pages freed for a few seconds go back to the host and the next
run pays their first touch again; unprimed, whichever run followed dask-image's took 2-3x longer).

Usage::

    python benchmarks/volumes.py              # 64 x 512^2; RSS 64 x 256^2 vs 64 x 512^2
    python benchmarks/volumes.py --quick      # 32 x 256^2; RSS 32 x 128^2 vs 32 x 256^2
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from end_to_end import (
    _cluster,
    _count_reads,
    _fresh,
    _output_array,
    _reads_and_rss,
    _verdict,
    prime_pages,
    print_rss_growth,
)

from featuremap import banks
from featuremap.engine.layers import ConvLayer

SIGMAS = (1.0, 1.6, 3.5)


def make_volume(path: Path, shape: tuple[int, int, int], chunks: tuple[int, int, int]) -> str:
    """Smoothed random float32 volume, written a slab of chunks at a time."""
    array = zarr.create_array(
        str(path), shape=shape, chunks=chunks, dtype="float32", overwrite=True
    )
    rng = np.random.default_rng(0)
    for z0 in range(0, shape[0], chunks[0]):
        slab = rng.random((min(chunks[0], shape[0] - z0), *shape[1:]), dtype=np.float32)
        array[z0 : z0 + slab.shape[0]] = slab
    return str(path)


def gaussian_bank() -> tuple[ConvLayer, list[tuple[float, tuple[int, ...]]]]:
    """The conv layer, and per filter ``(sigma, order)`` for dask-image."""
    bank = banks.get("gaussian", ndim=3, sigmas=list(SIGMAS))
    layer = ConvLayer.create(bank.weight, padding="same", padding_mode="reflect")
    return layer, [(f["sigma"], tuple(f["order"])) for f in bank.filters]


def run_featuremap(client, source: str, output: str, layer: ConvLayer, chunks) -> dict:
    from featuremap.jobs.run import run_layers

    client.run(_count_reads, str(Path(source).resolve()))
    started = time.perf_counter()
    summary = run_layers(
        [layer], input=source, output=output, client=client, overwrite=True, out_chunks=chunks
    )
    seconds = time.perf_counter() - started
    after = client.run(_reads_and_rss)
    return {
        "seconds": seconds,
        "blocks": summary.blocks_total,
        "peak_rss": max(rss for _, rss in after.values()),
    }


def run_dask_image(source: str, output: str, filters, chunks) -> float:
    import dask.array as da
    from dask_image.ndfilters import gaussian_filter

    started = time.perf_counter()
    x = da.from_zarr(source)
    maps = [gaussian_filter(x, sigma, order=order, mode="mirror") for sigma, order in filters]
    stacked = da.stack(maps).rechunk((len(maps), *chunks))
    da.store(stacked, _output_array(output, stacked.shape, (len(maps), *chunks)), lock=False)
    return time.perf_counter() - started


def run_io_floor(source: str, output: str, filters: int, chunks) -> float:
    import dask.array as da

    started = time.perf_counter()
    x = da.from_zarr(source)
    copies = da.broadcast_to(x[None], (filters, *x.shape)).rechunk((filters, *chunks))
    da.store(copies + 0, _output_array(output, copies.shape, (filters, *chunks)), lock=False)
    return time.perf_counter() - started


def compare(client, scratch: Path, shape, chunks, repeats: int) -> None:
    layer, filters = gaussian_bank()
    source = make_volume(scratch / "volume.zarr", shape, chunks)
    warm = make_volume(scratch / "warm.zarr", (16, 32, 32), (16, 32, 32))  # worker imports
    run_featuremap(client, warm, str(scratch / "warm-out.zarr"), layer, (16, 32, 32))
    outputs = {name: scratch / f"{name}.zarr" for name in ("fm", "di", "floor")}
    runs: dict[str, list[float]] = {"fm": [], "di": [], "floor": []}
    blocks = 0
    output_bytes = len(filters) * int(np.prod(shape)) * 4
    for _ in range(repeats):  # interleaved, so drift in the machine hits both alike
        _fresh(outputs.values())
        prime_pages(scratch, output_bytes)
        run = run_featuremap(client, source, str(outputs["fm"]), layer, chunks)
        runs["fm"].append(run["seconds"])
        blocks = run["blocks"]
        _fresh(outputs.values())
        prime_pages(scratch, output_bytes)
        runs["di"].append(run_dask_image(source, str(outputs["di"]), filters, chunks))
        _fresh(outputs.values())
        prime_pages(scratch, output_bytes)
        runs["floor"].append(run_io_floor(source, str(outputs["floor"]), len(filters), chunks))
    _fresh(outputs.values())
    fm, di = statistics.median(runs["fm"]), statistics.median(runs["di"])
    floor = statistics.median(runs["floor"])
    print(f"\n{'x'.join(map(str, shape))} volume, {len(filters)} filters, {blocks} blocks")
    print(f"featuremap  {fm:7.2f} s   (runs: {', '.join(f'{s:.2f}' for s in runs['fm'])})")
    print(f"dask-image  {di:7.2f} s   (runs: {', '.join(f'{s:.2f}' for s in runs['di'])})")
    print(f"I/O floor   {floor:7.2f} s   (runs: {', '.join(f'{s:.2f}' for s in runs['floor'])})")
    print(f"featuremap vs I/O floor: {fm / floor:.2f}x; dask-image vs I/O floor: {di / floor:.2f}x")
    print(f"featuremap vs dask-image: {di / fm:.2f}x faster (goal >= 5x: {_verdict(di / fm >= 5)})")


def rss_growth(scratch: Path, shapes, chunks, workers: int) -> None:
    layer, _ = gaussian_bank()
    peaks = []
    for shape in shapes:
        source = make_volume(scratch / "rss.zarr", shape, chunks)
        cluster, client = _cluster(workers)  # fresh workers: a clean peak
        with cluster, client:
            output = str(scratch / "rss-out.zarr")
            peaks.append(run_featuremap(client, source, output, layer, chunks)["peak_rss"])
        shutil.rmtree(scratch / "rss-out.zarr", ignore_errors=True)
        shutil.rmtree(source, ignore_errors=True)
    names = ["x".join(map(str, shape)) for shape in shapes]
    print_rss_growth("peak RSS per worker", names, peaks)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="32 x 256^2, RSS 32 x 128^2 vs 256^2")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each (median)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-rss", action="store_true", help="skip the RSS scaling runs")
    args = parser.parse_args()
    depth, side = (32, 256) if args.quick else (64, 512)
    chunks = (32, 128, 128)
    with tempfile.TemporaryDirectory(prefix="fm-volumes-") as folder:
        scratch = Path(folder)
        cluster, client = _cluster(args.workers)
        with cluster, client:
            compare(client, scratch, (depth, side, side), chunks, args.repeats)
        if not args.skip_rss:
            shapes = ((depth, side // 2, side // 2), (depth, side, side))
            rss_growth(scratch, shapes, chunks, args.workers)


if __name__ == "__main__":
    main()
