"""Running a pipeline: Zarr in -> one Dask task per output block -> Zarr out.

A job goes through three steps, and nothing is written before the first one has passed:

1. :func:`plan_job` opens the input, builds the layers, resolves the geometry and checks the output
   path (not inside the input, parent writable, an existing store only with ``overwrite`` or
   ``resume``, never one whose job is alive) -> a picklable :class:`JobPlan`;
2. :func:`open_job` creates the output store (or reopens it to resume), writes the fingerprint and
   marks it ``running``;
3. :func:`execute_job` sends one task per missing output block. Each task computes its fused
   stack on the worker and writes its block into its own chunk of ``features``, then its
   done-marker (:func:`write_block`); block data never travels through the client. Blocks are
   whole chunks, so concurrent writes never share a chunk and a retried task rewrites the same
   bytes. ``status: complete`` and the consolidated metadata are written last.

:func:`run` drives the three steps from the client; :func:`submit` does 1-2 on the client and 3
inside a task on the cluster, so the job goes on without the caller.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from featuremap import _device, _jobs, _store, _verify
from featuremap.errors import InputError, JobError, StoreBusyError, describe
from featuremap.geometry import ceil_div
from featuremap.layers import stack_geometry

__all__ = [
    "JobPlan",
    "RunSummary",
    "UnauthenticatedSchedulerWarning",
    "execute_job",
    "insecure_scheduler_message",
    "open_job",
    "plan_job",
    "run",
    "run_layers",
    "submit",
    "write_block",
]

#: Default output blocks hold at least this many output pixels per spatial axis (a distributed
#: task costs ~2.5 ms, PERFORMANCE.md) unless the image is smaller ...
MIN_BLOCK = 256
#: ... and at most this many bytes of features, so a block fits comfortably in a worker.
MAX_BLOCK_BYTES = 256 * 2**20
#: Extra attempts for a block task that raised (worker loss is retried by Dask on its own).
RETRIES = 2

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunSummary:
    """What a finished :func:`run` reports (``featuremap run --json``)."""

    status: str
    store: str
    blocks_total: int
    blocks_computed: int
    blocks_skipped: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobPlan:
    """A validated job: everything needed to create the store and compute it, picklable.

    ``mode`` is ``"new"``, ``"overwrite"`` or ``"resume"``.
    """

    store: str
    input_store: str
    input_array: str | None
    channel_axis: int | None
    read_chunks: tuple[int, int]
    layers: tuple[Any, ...]
    layer_dicts: tuple[dict[str, Any], ...]
    layout: _store.OutputLayout
    root_attrs: dict[str, Any]
    fingerprint: str
    mode: str
    device: str


# ------------------------------------------------------------------------------------- planning


def _versions() -> dict[str, str]:
    import dask
    import distributed
    import zarr

    import featuremap

    return {"featuremap": featuremap.__version__, "dask": dask.__version__,
            "distributed": distributed.__version__, "zarr": zarr.__version__,
            "numpy": np.__version__}


def _layers_hash(layers: Sequence[Any]) -> str:
    """sha256 of the layers' metadata and weights (for jobs given layers instead of a pipeline)."""
    digest = hashlib.sha256(
        json.dumps([layer.to_dict() for layer in layers], sort_keys=True, default=str).encode()
    )
    for layer in layers:
        if layer.kind == "conv":
            digest.update(layer.weight.tobytes())
            digest.update(b"" if layer.bias is None else layer.bias.tobytes())
    return digest.hexdigest()


def _block_chunks(
    storage: tuple[int, int], jump: tuple[int, int], out_hw: tuple[int, int], features: int,
    requested: tuple[int, int] | None,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(out_chunks, read_chunks)`` per spatial axis.

    Reads are whole multiples of the storage chunks (each stored chunk is read by one task)
    covering about one output block; output blocks default to the read chunk divided by the jump,
    at least :data:`MIN_BLOCK` pixels and at most :data:`MAX_BLOCK_BYTES` of features.
    """
    out_chunks, read_chunks = [], []
    for axis in range(2):
        if requested is None:
            read = storage[axis] * ceil_div(MIN_BLOCK * jump[axis], storage[axis])
            out = max(ceil_div(read, jump[axis]), MIN_BLOCK)
        else:
            out = requested[axis]
        out_chunks.append(min(out, out_hw[axis]))
    while (
        requested is None and features * out_chunks[0] * out_chunks[1] * 4 > MAX_BLOCK_BYTES
        and max(out_chunks) > MIN_BLOCK
    ):
        widest = int(out_chunks[1] > out_chunks[0])
        out_chunks[widest] = max(out_chunks[widest] // 2, MIN_BLOCK)
    for axis in range(2):
        read_chunks.append(storage[axis] * ceil_div(out_chunks[axis] * jump[axis], storage[axis]))
    return tuple(out_chunks), tuple(read_chunks)  # type: ignore[return-value]


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_output_path(store: str, input_store: str) -> None:
    """The output may not be or contain the input, nor lie inside it; its folder must be writable."""
    out_path, in_path = _store.local_path(store), _store.local_path(input_store)
    if out_path is None:
        return
    if in_path is not None and (out_path == in_path or in_path in out_path.parents):
        raise InputError(
            f"output store {store!r} lies inside the input store {input_store!r}; choose an output "
            "outside it"
        )
    if in_path is not None and out_path in in_path.parents:
        raise InputError(
            f"output store {store!r} contains the input store {input_store!r}; choose another output"
        )
    if out_path.exists() and not out_path.is_dir():
        raise InputError(f"output store {store!r} exists and is a file, not a Zarr store")
    ancestor = _nearest_existing(out_path.parent)
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(
            f"cannot create output store {store!r}: {str(ancestor)!r} is not a writable folder"
        )


def _existing_group(store: str) -> Any | None:
    """The existing output group, ``None`` when nothing is there; refuses non-featuremap data."""
    path = _store.local_path(store)
    if path is not None and (not path.exists() or not any(path.iterdir())):
        return None
    try:
        group = _store.open_output_group(store, "r")
    except (FileNotFoundError, ValueError):
        if path is None:
            return None
        group = None
    if group is None or _jobs.ROOT_KEY not in group.attrs:
        raise InputError(
            f"output path {store!r} exists and is not a featuremap store; it is never replaced, "
            "choose another output"
        )
    return group


def _plan_mode(store: str, *, resume: bool, overwrite: bool, fingerprint: str) -> tuple[str, Any]:
    if resume and overwrite:
        raise InputError("resume and overwrite exclude each other; choose one")
    group = _existing_group(store)
    if group is None:
        return "new", None
    # first: a live job's store is busy, whatever the flags
    _jobs.check_takeover(group, store, fingerprint=fingerprint if resume else None)
    if not (resume or overwrite):
        raise InputError(
            f"output store {store!r} already exists; use --overwrite to replace it or --resume "
            "to finish it"
        )
    return ("resume" if resume else "overwrite"), group


def plan_job(
    layers_for: Callable[[int], Sequence[Any]],
    *,
    input: str,
    array: str | None,
    channel_axis: int | None,
    output: str,
    out_chunks: tuple[int, int] | None,
    pipeline: Mapping[str, Any] | None,
    pipeline_hash: str | None,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "auto",
) -> JobPlan:
    """Validate a job completely without writing anything.

    ``layers_for(in_channels)`` builds the layers; ``pipeline`` / ``pipeline_hash`` are the
    provenance (``None``: derived from the layers).
    """
    device = _device.parse_device(device)
    source = _store.open_input(input, array, channel_axis)
    layers = tuple(layers_for(source.channels))
    if not layers:
        raise InputError("the pipeline has no layers; add at least one conv or pool layer")
    geometries, stacks, shapes = stack_geometry(layers, source.spatial_shape, source.channels)
    output = os.fspath(output)
    _check_output_path(output, input)
    pipeline_hash = pipeline_hash or _layers_hash(layers)
    identity = source.identity()
    versions = _versions()
    fingerprint = _jobs.fingerprint(pipeline_hash, identity, versions["featuremap"])
    mode, existing = _plan_mode(output, resume=resume, overwrite=overwrite, fingerprint=fingerprint)

    features, out_h, out_w = shapes[-1]
    if mode == "resume":
        out_chunks = tuple(existing[_store.FEATURES].chunks[-2:])  # the grid of the existing store
    out_chunks, read_chunks = _block_chunks(
        source.spatial_chunks, stacks[-1].jump, (out_h, out_w), features, out_chunks
    )
    layout = _store.OutputLayout(
        batch_dims=source.batch_dims,
        shape=(*source.batch_shape, features, out_h, out_w),
        chunks=(*source.batch_chunks, features, *out_chunks),
        stack=stacks[-1],
    )
    layer_dicts = tuple(_store.describe_layers(layers, geometries, stacks, shapes))
    root_attrs = {
        "pipeline": dict(pipeline) if pipeline is not None else {"layers": list(layer_dicts)},
        "pipeline_hash": pipeline_hash,
        "fingerprint": fingerprint,
        "input": identity,
        "versions": versions,
        "device": device,
    }
    return JobPlan(
        store=output, input_store=input, input_array=array, channel_axis=source.channel_axis,
        read_chunks=read_chunks, layers=layers, layer_dicts=layer_dicts, layout=layout,
        root_attrs=root_attrs, fingerprint=fingerprint, mode=mode, device=device,
    )


# ------------------------------------------------------------------------------------- the job


def _recheck(plan: JobPlan) -> None:
    """Check the store again under the claim: another job may have started it since planning."""
    mode, _ = _plan_mode(
        plan.store, resume=plan.mode == "resume", overwrite=plan.mode == "overwrite",
        fingerprint=plan.fingerprint,
    )
    if mode != plan.mode:
        raise StoreBusyError(
            f"output store {plan.store!r} changed while this job was being prepared (another job "
            "wrote it); check it with 'featuremap status' and retry"
        )


def open_job(plan: JobPlan, owner: Mapping[str, Any]) -> Any:
    """Create (or reopen, to resume) the output store and mark it ``running`` under ``owner``.

    Runs under the store's claim (:func:`featuremap._jobs.claim_store`), so that of two jobs
    started at once exactly one gets the store; the other raises :class:`StoreBusyError`.
    """
    with _jobs.claim_store(_store.local_path(plan.store), owner, plan.store):
        _recheck(plan)
        if plan.mode == "resume":
            _store.sweep_partial_files(plan.store)
            group = _store.open_output_group(plan.store, "r+")
        else:
            group = _store.create_output(
                plan.store, layout=plan.layout, layers=plan.layers, layer_dicts=plan.layer_dicts,
                root_attrs=plan.root_attrs, overwrite=plan.mode == "overwrite",
            )
        _jobs.start_job(
            group, owner=owner, fingerprint=plan.fingerprint, blocks_total=plan.layout.blocks_total,
            blocks_done=_jobs.count_done(group),
        )
    return group


@functools.lru_cache(maxsize=4)
def _output_arrays(store: str, job_id: str) -> tuple[Any, Any]:
    """``features`` and the done-markers, opened once per worker process and job."""
    group = _store.open_output_group(store, "r+")
    return group[_store.FEATURES], group[_jobs.MARKERS]


def write_block(
    block_index: tuple[int, ...], block_slices: tuple[slice, ...], block: Any, store: str,
    job_id: str,
) -> str:
    """Sink of a block task: write the block into its chunk, then its done-marker.

    Runs on a worker. Returns where the block was computed (``"cpu"`` or ``"gpu"``), so only a
    word travels back.
    """
    features, markers = _output_arrays(store, job_id)
    device = _device.array_device(block)
    features[block_slices] = np.asarray(_device.to_host(block), dtype=np.float32)
    markers[block_index] = 1  # after the data: a marker always means the block is on disk
    return device


def _all_blocks(grid_shape: Sequence[int]) -> list[tuple[int, ...]]:
    return list(product(*(range(n) for n in grid_shape)))


def _input_dask(plan: JobPlan) -> Any:
    source = _store.open_input(plan.input_store, plan.input_array, plan.channel_axis)
    return source.to_dask(plan.read_chunks)


class _Heartbeat:
    """Refreshes the job's heartbeat and ``blocks_done`` every few seconds from a thread.

    It beats only while ``client`` is connected to its scheduler: a job whose scheduler died
    cannot progress, so its heartbeat must go stale even though this process lives on.
    """

    def __init__(self, group: Any, owner: Mapping[str, Any], done: int, client: Any) -> None:
        self.group, self.owner, self.done, self.client = group, owner, done, client
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="featuremap-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(_jobs.HEARTBEAT_INTERVAL_S):
            if self.client.status == "running":
                _jobs.record_progress(self.group, owner=self.owner, blocks_done=self.done)

    @contextmanager
    def running(self) -> Iterator[_Heartbeat]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def _consolidate(store: str) -> None:
    import zarr

    with warnings.catch_warnings():
        # zarr 3 warns that consolidated metadata is not (yet) in the v3 spec; xarray reads it
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(store)


def _compute_blocks(
    client: Any, plan: JobPlan, devices: _device.DevicePlan, todo: Sequence[tuple[int, ...]],
    owner: Mapping[str, Any], on_block: Callable[[str], None],
) -> None:
    """Send one task per block of ``todo`` and call ``on_block(device)`` as each finishes."""
    from distributed import as_completed

    from featuremap._blockwise import block_tasks

    tasks = block_tasks(
        _input_dask(plan), list(plan.layers), write_block,
        out_chunks=plan.layout.out_chunks, blocks=todo, sink_args=(plan.store, owner["id"]),
        # without any GPU worker no task so much as imports CuPy
        device=devices.requested if devices.gpu_workers else None,
    )
    futures = client.compute(list(tasks.values()), retries=RETRIES, **devices.task_restrictions())
    try:
        for future in as_completed(futures):
            on_block(future.result())
    finally:
        client.cancel(futures)


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def execute_job(
    client: Any, plan: JobPlan, group: Any, owner: Mapping[str, Any],
    devices: _device.DevicePlan, progress: Progress | None = None,
) -> tuple[int, int]:
    """Compute every block without a done-marker (or whose chunk is gone), then finish the store.

    Returns ``(blocks_computed, blocks_skipped)``.

    Raises
    ------
    JobError
        A block failed past its retries (the store is left ``failed``; an interrupt leaves it
        ``interrupted``).
    """
    total = plan.layout.blocks_total
    # a marker whose chunk was deleted since does not count: listing the chunks is cheap, reading
    # them is not (corrupted chunks are found by `featuremap verify`)
    done = _jobs.done_blocks(group) & _verify.stored_blocks(group)
    todo = [block for block in _all_blocks(plan.layout.grid_shape) if block not in done]
    skipped = total - len(todo)
    heartbeat = _Heartbeat(group, owner, skipped, client)
    per_device: Counter[str] = Counter()

    def on_block(device: str) -> None:
        per_device[device] += 1
        heartbeat.done = skipped + sum(per_device.values())
        if progress is not None:
            progress(heartbeat.done, total)

    if progress is not None:
        progress(skipped, total)
    try:
        with heartbeat.running():
            if todo:
                _compute_blocks(client, plan, devices, todo, owner, on_block)
    except BaseException as error:
        _jobs.release(group, owner=owner)
        # a lost scheduler (or Ctrl-C) interrupts the job, `--resume` finishes it; a block that
        # failed past its retries fails it
        lost = not isinstance(error, Exception) or client.status != "running"
        status = "interrupted" if lost else "failed"
        _jobs.finish_job(group, status, blocks_done=_jobs.count_done(group), error=_one_line(error))
        if isinstance(error, Exception):
            raise JobError(
                f"job writing {plan.store!r} failed after {sum(per_device.values())} of {len(todo)} "
                f"blocks: {_one_line(error)}"
            ) from error
        raise
    _finish(plan, group, owner, devices, per_device)
    return len(todo), skipped


def _finish(
    plan: JobPlan, group: Any, owner: Mapping[str, Any], devices: _device.DevicePlan,
    per_device: Mapping[str, int],
) -> None:
    """Check every marker is there, consolidate, then write ``status: complete`` (last)."""
    written = _jobs.count_done(group)
    _jobs.release(group, owner=owner)
    if written != plan.layout.blocks_total:
        _jobs.finish_job(group, "failed", blocks_done=written, error="blocks missing after the run")
        raise JobError(
            f"job writing {plan.store!r} ended with {written} of {plan.layout.blocks_total} blocks on disk"
        )
    _jobs.record_devices(group, devices=devices.to_dict(), blocks_per_device=dict(per_device))
    _consolidate(plan.store)
    complete = _store.open_output_group(plan.store, "r+", consolidated=True)  # keeps the metadata
    _jobs.finish_job(complete, "complete", blocks_done=written)


# ------------------------------------------------------------------------------------- clients


class UnauthenticatedSchedulerWarning(UserWarning):
    """A job is sent over plain TCP to a scheduler that is not on this machine."""


def insecure_scheduler_message(scheduler: str, security: Any = None) -> str | None:
    """A one-line warning when ``scheduler`` is reached unauthenticated from another host.

    Dask executes what its scheduler sends, so anyone who can reach a plain ``tcp://`` scheduler
    can run code on the workers; loopback addresses stay on this machine.
    """
    import ipaddress
    from urllib.parse import urlsplit

    if security is not None and getattr(security, "require_encryption", False):
        return None
    parts = urlsplit(scheduler if "://" in scheduler else f"tcp://{scheduler}")
    if parts.scheme != "tcp":
        return None
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        loopback = False
    if loopback:
        return None
    return (
        f"the connection to {scheduler} is unauthenticated and unencrypted: anyone who can reach "
        "it can run code on the workers; use tls:// with --tls-ca-file/--tls-cert/--tls-key"
    )


@contextmanager
def _cluster_client(
    client: Any, scheduler: str | None, workers: int | None, security: Any
) -> Iterator[Any]:
    """The given client, one connected to ``scheduler``, or a fresh local cluster's (closed after)."""
    if client is not None and scheduler is not None:
        raise InputError("give either a client or a scheduler address, not both")
    if workers is not None and (client is not None or scheduler is not None):
        raise InputError("workers sizes a local cluster; it cannot be combined with a scheduler or client")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InputError(f"workers must be a positive integer, got {describe(workers)}")
    if client is not None:
        yield client
        return
    import dask.config
    from distributed import Client, LocalCluster

    if scheduler is not None:
        message = insecure_scheduler_message(scheduler, security)
        if message is not None:
            warnings.warn(message, UnauthenticatedSchedulerWarning, stacklevel=4)
        try:  # Dask's connect timeout (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT), 30 s by default
            connected = Client(scheduler, security=security,
                               timeout=dask.config.get("distributed.comm.timeouts.connect"))
        except (OSError, TimeoutError) as error:
            raise JobError(
                f"cannot connect to the scheduler {scheduler!r}: {_one_line(error)}; check that it "
                "runs, the address and the TLS options"
            ) from None
        except ValueError as error:  # a malformed address or TLS setting
            raise InputError(f"cannot use the scheduler address {scheduler!r}: {_one_line(error)}") from None
        with connected:
            yield connected
        return
    # one single-threaded worker process per core: blocks run BLAS/oneDNN kernels that would
    # fight over cores in threads
    with LocalCluster(
        n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
        dashboard_address=":0",
    ) as cluster, Client(cluster) as local:
        yield local


# ------------------------------------------------------------------------------------- public


def _as_pipeline(pipeline: Any, *, input: str | None, array: str | None, output: str | None) -> Any:
    from featuremap.pipeline import Pipeline, load_pipeline

    if not isinstance(pipeline, Pipeline):
        pipeline = load_pipeline(pipeline)
    pipeline = pipeline.with_overrides(input=input, array=array, output=output)
    if pipeline.input.store is None:
        raise InputError("no input store: give --input STORE or input.store in the pipeline")
    if pipeline.output.store is None:
        raise InputError("no output store: give --output STORE or output.store in the pipeline")
    return pipeline


def _plan_pipeline(pipeline: Any, *, resume: bool, overwrite: bool, device: str) -> JobPlan:
    return plan_job(
        pipeline.build_layers,
        input=pipeline.input.store, array=pipeline.input.array,
        channel_axis=pipeline.input.channel_axis, output=pipeline.output.store,
        out_chunks=pipeline.output.chunks, pipeline=pipeline.to_dict(),
        pipeline_hash=pipeline.fingerprint(), resume=resume, overwrite=overwrite, device=device,
    )


def _run_plan(
    plan: JobPlan, *, client: Any, scheduler: str | None, workers: int | None, security: Any,
    progress: Progress | None,
) -> RunSummary:
    started = time.perf_counter()
    with _cluster_client(client, scheduler, workers, security) as active:
        devices = _device.plan_devices(active, plan.device)  # may refuse: nothing written yet
        owner = _jobs.new_owner()
        group = open_job(plan, owner)
        computed, skipped = execute_job(active, plan, group, owner, devices, progress)
    return RunSummary(
        status="complete", store=plan.store, blocks_total=plan.layout.blocks_total,
        blocks_computed=computed, blocks_skipped=skipped,
        seconds=round(time.perf_counter() - started, 3),
    )


def run(
    pipeline: Any,
    *,
    input: str | None = None,
    output: str | None = None,
    client: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    array: str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    device: str = "auto",
    security: Any = None,
    progress: Progress | None = None,
) -> RunSummary:
    """Run a pipeline to completion and return a summary.

    Parameters
    ----------
    pipeline : Pipeline, dict or path
        A :class:`featuremap.pipeline.Pipeline` or what :func:`featuremap.load_pipeline` accepts.
    input, array, output : str, optional
        Override the pipeline's input store, input array and output store.
    client : distributed.Client, optional
        Run on this client. Otherwise ``scheduler`` (``tcp://`` / ``tls://`` address, with
        ``security`` a :class:`distributed.security.Security` for TLS) is connected, or a local
        cluster of ``workers`` single-threaded processes (default: one per core) is started and
        closed after.
    resume : bool
        Finish an existing store: compute only blocks without a done-marker. The pipeline and input
        must be those the store was started with.
    overwrite : bool
        Replace an existing (finished, failed or interrupted) store.
    device : {"auto", "cpu", "gpu"}
    progress : callable(done, total), optional
        Called as blocks finish (``done`` includes blocks skipped by ``resume``).

    Returns
    -------
    RunSummary

    Raises
    ------
    InputError
        Anything wrong with the request; nothing has been written then.
    StoreBusyError
        The output store belongs to a job that is still running.
    JobError
        The job failed while running; the store is marked ``failed``.
    """
    pipeline = _as_pipeline(pipeline, input=input, array=array, output=output)
    plan = _plan_pipeline(pipeline, resume=resume, overwrite=overwrite, device=device)
    return _run_plan(
        plan, client=client, scheduler=scheduler, workers=workers, security=security,
        progress=progress,
    )


def run_layers(
    layers: Sequence[Any],
    *,
    input: str,
    output: str,
    array: str | None = None,
    channel_axis: int | None = None,
    out_chunks: tuple[int, int] | None = None,
    client: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    device: str = "auto",
    security: Any = None,
    progress: Progress | None = None,
) -> RunSummary:
    """:func:`run` for ready-made layers (:mod:`featuremap.layers`) instead of a pipeline."""
    plan = plan_job(
        lambda channels: layers, input=os.fspath(input), array=array, channel_axis=channel_axis,
        output=os.fspath(output), out_chunks=out_chunks, pipeline=None, pipeline_hash=None,
        resume=resume, overwrite=overwrite, device=device,
    )
    return _run_plan(
        plan, client=client, scheduler=scheduler, workers=workers, security=security,
        progress=progress,
    )


def _job_on_cluster(plan: JobPlan, owner: dict[str, Any], devices: _device.DevicePlan) -> str:
    """A submitted job, run inside a task: fans the block tasks out from the worker.

    If its worker dies, Dask reruns this task elsewhere, and the rerun skips blocks already done.
    The task takes the ownership over (its own host and process, the job's id), so that
    ``status`` sees at once when its worker is gone.
    """
    from distributed import worker_client

    group = _store.open_output_group(plan.store, "r+")
    owner = _jobs.adopt_job(group, owner, plan.store)
    with worker_client() as client:
        execute_job(client, plan, group, owner, devices)
    return plan.store


def submit(
    pipeline: Any,
    *,
    scheduler: str,
    security: Any = None,
    input: str | None = None,
    output: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    array: str | None = None,
    device: str = "auto",
) -> str:
    """Start a pipeline on a running cluster and return the output store's path at once.

    The store is created and marked ``running`` before this returns; the job then runs inside a
    task on the cluster, independent of the caller. Follow it with
    :func:`featuremap._store.read_status`.
    """
    from distributed import fire_and_forget

    pipeline = _as_pipeline(pipeline, input=input, array=array, output=output)
    plan = _plan_pipeline(pipeline, resume=resume, overwrite=overwrite, device=device)
    with _cluster_client(None, scheduler, None, security) as client:
        devices = _device.plan_devices(client, plan.device)
        owner = _jobs.new_owner(process=False)  # this process exits at once: the task adopts the job
        open_job(plan, owner)
        fire_and_forget(client.submit(_job_on_cluster, plan, owner, devices, pure=False))
    return plan.store
