"""Scale: the cost of a block when the compute is negligible, and what the client holds.

Each size runs a job of trivial blocks -- an all-zero input (never stored: every chunk is the
fill value), one conv of 4 random 3x3 filters, 256 x 256 output blocks, no shards, so that one
block is one task -- on a local cluster of 2 single-threaded workers, in a fresh process, and
reports:

* wall time per block of the whole job (planning, store creation, the bounded window of tasks,
  the markers, consolidation), after a small warm-up job on the same cluster;
* the peak RSS of the client process, which also hosts the local cluster's scheduler;
* the time ``featuremap status`` takes on the finished store (markers counted from packed bits);
* how many task keys ``dask.utils.key_split`` holds in its LRU (the scheduler runs in this
  process): Dask's cache of one entry per task key, bounded at 100 000 (19 MiB when full,
  measured), is the largest part of the growth from 16k to 131k blocks.

Goals (issue #13): RSS growth < 1.3x from 2k to 16k blocks and flat to 128k; <= 6 ms per block at
16k blocks on 2 workers; status < 5 s. The 0.1 measurements (one Dask graph of every block) are
printed beside them.

Usage::

    python benchmarks/scale.py                  # 2 025, 16 384 and 131 044 blocks (~15 min)
    python benchmarks/scale.py --quick          # 2 025 and 16 384 blocks (~2 min)
    python benchmarks/scale.py --sides 45 128   # grids of 45^2 and 128^2 blocks
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BLOCK = 256
WORKERS = 2
#: featuremap 0.1 on this machine (issue #13): blocks -> (ms per block, client+scheduler MiB).
BEFORE = {256: (27, 145), 2025: (15, 219), 4096: (20, 313), 16384: (21, 857)}


def pipeline() -> dict:
    return {
        "layers": [{"conv": {"bank": {"type": "random", "n": 4, "size": 3}, "padding": "same"}}],
        "output": {"chunks": [BLOCK, BLOCK], "shards": False},
    }


def zero_input(path: Path, side: int) -> str:
    """A ``side`` x ``side`` grid of 256^2 chunks that are all the fill value (nothing stored)."""
    import zarr

    zarr.create_array(
        str(path), shape=(side * BLOCK,) * 2, chunks=(BLOCK, BLOCK), dtype="float32", fill_value=0
    )
    return str(path)


def measure(side: int, folder: Path) -> dict:
    """One size, in this (fresh) process: the job's time, this process's peak RSS, status time."""
    from dask.utils import key_split

    from featuremap.cluster.client import cluster_client
    from featuremap.jobs.run import run
    from featuremap.jobs.state import read_status

    source = zero_input(folder / "zeros.zarr", side)
    warm = zero_input(folder / "warm-in.zarr", 8)
    with cluster_client(None, None, WORKERS, None) as client:
        run(pipeline(), input=warm, output=str(folder / "warm.zarr"), client=client)
        started = time.perf_counter()
        summary = run(pipeline(), input=source, output=str(folder / "out.zarr"), client=client)
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    status = read_status(str(folder / "out.zarr"))
    status_seconds = time.perf_counter() - started
    assert status["blocks_done"] == summary.blocks_total == side * side
    return {
        "blocks": summary.blocks_total,
        "seconds": seconds,
        "ms_per_block": 1e3 * seconds / summary.blocks_total,
        "peak_mib": peak,
        "status_seconds": status_seconds,
        "key_split_keys": key_split.cache_info().currsize,
    }


def run_size(side: int, scratch: Path) -> dict:
    """:func:`measure` in a fresh interpreter, so that each size has its own peak RSS."""
    folder = Path(tempfile.mkdtemp(prefix=f"scale-{side}-", dir=scratch))
    result = subprocess.run(
        [sys.executable, __file__, "--one", str(side), "--dir", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def report(results: list[dict]) -> None:
    first = results[0]
    print(
        f"{'blocks':>8} {'ms/block':>9} {'peak MiB':>9} {'RSS vs first':>13} {'status s':>9} "
        f"{'key_split':>10}   0.1"
    )
    for row in results:
        before = BEFORE.get(row["blocks"])
        was = f"{before[0]} ms, {before[1]} MiB" if before else "-"
        print(
            f"{row['blocks']:>8} {row['ms_per_block']:>9.2f} {row['peak_mib']:>9.0f} "
            f"{row['peak_mib'] / first['peak_mib']:>12.2f}x {row['status_seconds']:>9.3f} "
            f"{row['key_split_keys']:>10}   {was}"
        )
    by_blocks = {row["blocks"]: row for row in results}
    if 16384 in by_blocks and 2025 in by_blocks:
        growth = by_blocks[16384]["peak_mib"] / by_blocks[2025]["peak_mib"]
        per_block = by_blocks[16384]["ms_per_block"]
        print(f"RSS 16k / 2k blocks: {growth:.2f}x (goal < 1.3x)")
        print(f"ms per block at 16k blocks on {WORKERS} workers: {per_block:.2f} (goal <= 6)")
    largest = results[-1]
    print(
        f"status on the largest store ({largest['blocks']} blocks): "
        f"{largest['status_seconds']:.3f} s (goal < 5 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sides", type=int, nargs="+", default=None, help="grid sides in blocks")
    parser.add_argument("--quick", action="store_true", help="2 025 and 16 384 blocks only")
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, Path(args.dir))))
        return
    sides = args.sides or ([45, 128] if args.quick else [45, 128, 362])
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        results = []
        for side in sides:
            results.append(run_size(side, Path(scratch)))
            row = results[-1]
            print(
                f"... {row['blocks']} blocks: {row['ms_per_block']:.2f} ms/block, "
                f"{row['peak_mib']:.0f} MiB",
                flush=True,
            )
    report(results)


if __name__ == "__main__":
    main()
