"""The job entry points: :func:`run` (``featuremap.run``), :func:`run_layers` and :func:`submit`.

:func:`run` plans the job (:mod:`.plan`), then opens and executes it (:mod:`.execute`) from the
calling process; :func:`submit` plans and opens it here and executes it inside a task on the
cluster, so the job goes on without the caller.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from featuremap.cluster.client import cluster_client, local_processes, runs_inline
from featuremap.cluster.devices import DevicePlan, plan_devices
from featuremap.engine.layers import Layer
from featuremap.engine.stack import stack_ndim
from featuremap.errors import InputError, error_line, option, spoken
from featuremap.io import InputSelection, OutputStore
from featuremap.io.sizing import OutputOptions
from featuremap.jobs import state
from featuremap.jobs.execute import Progress, execute_job, open_job
from featuremap.jobs.plan import JobPlan, plan_job
from featuremap.jobs.registry import JobRecord, publish, task_prefix
from featuremap.jobs.state import JobOwner
from featuremap.jobs.tracking import JobTracker, job_record, new_ticket
from featuremap.pipeline.pipeline import Pipeline, load_pipeline

__all__ = ["DASHBOARD_PRELOAD", "DRIVER_PRIORITY", "RunSummary", "run", "run_layers", "submit"]

#: The scheduler preload that serves the jobs page (:mod:`featuremap.jobs.dashboard`): a local
#: cluster's scheduler runs it; named, not imported, so that a run loads no web server code.
DASHBOARD_PRELOAD = "featuremap.jobs.dashboard"
#: The Dask priority of every submitted job's driver task, whatever the job's own: a driver
#: secedes from its thread at once and only queues the job's blocks (under the job's priority),
#: so it goes ahead of every block task and a queued job waits about one block's time for it
#: (until then nothing renews the job's heartbeat: :data:`featuremap.jobs.state.QUEUED_TIMEOUT_S`).
DRIVER_PRIORITY = 10**9


@dataclass(frozen=True)
class RunSummary:
    """What a finished :func:`run` reports (``featuremap run --json``)."""

    status: str
    store: str
    blocks_total: int
    blocks_computed: int
    blocks_skipped: int
    seconds: float
    dashboard: str | None = None
    #: Values finite as computed that the stored dtype (float16) made +-inf, in the whole store.
    values_overflowed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_pipeline(pipeline: Any, **overrides: Any) -> Pipeline:
    loaded = pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline)
    return loaded.with_overrides(**overrides)


def _plan_pipeline(
    pipeline: Pipeline, *, resume: bool, overwrite: bool, device: str, allow_large: bool = False
) -> JobPlan:
    if pipeline.input.store is None:
        raise InputError(
            f"no input store: give {option('input', 'STORE')} or input.store in the pipeline"
        )
    if pipeline.output.store is None:
        raise InputError(
            f"no output store: give {option('output', 'STORE')} or output.store in the pipeline"
        )
    return plan_job(
        pipeline.build_layers,
        spatial_ndim=pipeline.ndim,
        input=pipeline.input.store,
        array=pipeline.input.array,
        selection=pipeline.input.selection(),
        output=pipeline.output.store,
        options=replace(pipeline.output.options(), allow_large=allow_large),
        pipeline=pipeline.to_dict(),
        pipeline_hash=pipeline.fingerprint(),
        resume=resume,
        overwrite=overwrite,
        device=device,
        resolve=pipeline.resolve_stack,
    )


def _run_plan(
    plan: JobPlan,
    *,
    client: Any,
    scheduler: str | None,
    workers: int | None,
    security: Any,
    progress: Progress | None,
    dashboard: str | None = None,
    on_dashboard: Callable[[str], None] | None = None,
    priority: int = 0,
    resume_command: str | None = None,
    processes: bool | None = None,
) -> RunSummary:
    started = time.perf_counter()
    if processes is not None and (client is not None or scheduler is not None):
        raise InputError(
            f"{spoken('--processes/--threads', 'processes=')} chooses how a local cluster runs; "
            "it cannot be combined with a scheduler or client"
        )
    links: list[str] = []

    def seen(link: str) -> None:
        links.append(link)
        if on_dashboard is not None:
            on_dashboard(link)

    with cluster_client(
        client,
        scheduler,
        workers,
        security,
        processes=local_processes(processes, plan.layout.blocks_total),
        dashboard=dashboard,
        on_dashboard=seen,
        preload=(DASHBOARD_PRELOAD,),
        inline=runs_inline(processes, dashboard, plan.layout.blocks_total),
    ) as active:
        devices = plan_devices(active, plan.device)  # may refuse: nothing written yet
        owner = state.new_owner()
        ticket = new_ticket(
            plan, owner, scheduler=scheduler, priority=priority, resume=resume_command
        )
        store = open_job(plan, owner, ticket.to_dict())
        tracker = JobTracker(active, job_record(plan, owner, ticket, "running"))
        with tracker.following(progress) as told:
            computed, skipped = execute_job(active, plan, store, owner, devices, told, priority)
    return RunSummary(
        values_overflowed=OutputStore.open(plan.store, "r").overflowed(),
        status="complete",
        store=plan.store,
        blocks_total=plan.layout.blocks_total,
        blocks_computed=computed,
        blocks_skipped=skipped,
        seconds=round(time.perf_counter() - started, 3),
        dashboard=links[0] if links else None,
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
    allow_large: bool = False,
    dashboard: str | None = None,
    on_dashboard: Callable[[str], None] | None = None,
    priority: int = 0,
    resume_command: str | None = None,
    processes: bool | None = None,
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
        cluster is started and closed after: ``workers`` single-threaded worker processes
        (default: one per core), or for a small job one worker of ``workers`` threads inside
        this process (see ``processes``).
    resume : bool
        Finish an existing store: compute only blocks without a done-marker. The pipeline and input
        must be those the store was started with.
    overwrite : bool
        Replace an existing (finished, failed or interrupted) store.
    device : {"auto", "cpu", "gpu"}
    progress : callable(done, total), optional
        Called as blocks finish (``done`` includes blocks skipped by ``resume``).
    allow_large : bool
        Run outputs over the size and block limits (:mod:`featuremap.io.sizing`).
    dashboard, on_dashboard
        A local cluster's dashboard listens on 127.0.0.1 unless ``dashboard`` gives another
        address; ``on_dashboard(link)`` is told the cluster's dashboard address (a local one's
        when it is up; never for a small job run without a scheduler, see ``processes``).
    priority : int
        Dask priority of the job's tasks (higher first).
    resume_command : str, optional
        The command line that would finish this job if it is interrupted (the command line
        gives it; ``featuremap status`` and ``jobs`` show it).
    processes : bool, optional
        How a local cluster runs: worker processes (``True``) or threads in this process
        (``False``: one worker with its scheduler and dashboard). By default a job of at most
        :data:`featuremap.cluster.client.THREADS_MAX_BLOCKS` blocks, whose worker processes
        would take longer to start than the job to run, runs on threads of this process
        without Dask's scheduler (:class:`featuremap.cluster.inline.InlineCluster`: nothing
        to start, no dashboard) unless ``dashboard`` is given; a bigger one on processes.

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
    plan = _plan_pipeline(
        pipeline, resume=resume, overwrite=overwrite, device=device, allow_large=allow_large
    )
    return _run_plan(
        plan,
        client=client,
        scheduler=scheduler,
        workers=workers,
        security=security,
        progress=progress,
        dashboard=dashboard,
        on_dashboard=on_dashboard,
        priority=priority,
        resume_command=resume_command,
        processes=processes,
    )


def run_layers(
    layers: Sequence[Layer],
    *,
    input: str,
    output: str,
    array: str | None = None,
    channel_axis: int | None = None,
    selection: InputSelection | None = None,
    out_chunks: tuple[int, ...] | None = None,
    options: OutputOptions | None = None,
    client: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    device: str = "auto",
    security: Any = None,
    progress: Progress | None = None,
    processes: bool | None = None,
) -> RunSummary:
    """:func:`run` for ready-made layers (:mod:`featuremap.engine.layers`) instead of a pipeline.

    ``selection`` picks axes, level, region and channels (``channel_axis`` alone is the older
    shorthand for ``InputSelection(channel_axis=...)``); ``options`` say how the features are
    stored (dtype, codec, shards; ``out_chunks`` is the older way to give their chunks).
    """
    if channel_axis is not None:
        selection = replace(selection or InputSelection(), channel_axis=channel_axis)
    plan = plan_job(
        lambda channels, spacing: layers,
        spatial_ndim=stack_ndim(layers),
        input=os.fspath(input),
        array=array,
        selection=selection,
        output=os.fspath(output),
        options=replace(
            options or OutputOptions(), chunks=out_chunks or (options.chunks if options else None)
        ),
        pipeline=None,
        pipeline_hash=None,
        resume=resume,
        overwrite=overwrite,
        device=device,
    )
    return _run_plan(
        plan,
        client=client,
        scheduler=scheduler,
        workers=workers,
        security=security,
        progress=progress,
        processes=processes,
    )


def _job_on_cluster(plan: JobPlan, owner: JobOwner, devices: DevicePlan, record: JobRecord) -> str:
    """A submitted job, run inside a task: fans the block tasks out from the worker.

    If its worker dies, Dask reruns this task elsewhere, and the rerun skips blocks already done.
    The task takes the ownership over (its own host and process, the job's id), so that
    ``status`` sees at once when its worker is gone.

    Returns the store's path, or how the job ended (``failed: ...``): a job's failure is
    recorded in its store, its log and the registry, and the task itself never errs. An erred
    task's exception is kept by the worker with its traceback, and that traceback holds the
    frames of the task -- this one's ``plan`` and the job's scattered weights (up to 256 MiB
    for a large learned bank) -- for the worker's lifetime (measured with Dask 2026.7: one
    bank more per failed job). The frames the error passed through are cleared too.
    """
    from distributed import worker_client

    try:
        with worker_client() as client, JobTracker(client, record).following() as told:
            store = OutputStore.open(plan.store, "r+")
            adopted = state.adopt_job(store, owner)
            execute_job(client, plan, store, adopted, devices, told, record.priority)
    except Exception as error:  # noqa: BLE001 -- recorded by the tracker; see above
        ended = f"{type(error).__name__}: {error_line(error)}"
        _forget_frames(error)
        return ended
    return plan.store


def _forget_frames(error: BaseException) -> None:
    """Clear the locals of the finished frames ``error`` and its causes went through."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__


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
    allow_large: bool = False,
    priority: int = 0,
    on_submitted: Callable[[JobRecord, str | None], None] | None = None,
    resume_command: str | None = None,
) -> str:
    """Start a pipeline on a running cluster and return the output store's path at once.

    The store is created and marked ``running`` before this returns; the job then runs inside a
    task on the cluster (its driver, key ``featuremap_<id>-driver``), independent of the
    caller, its tasks under Dask ``priority``; ``resume_command`` is the command line that
    would finish it after an interruption. ``on_submitted(record, dashboard_link)`` is told
    the job's registry record (:mod:`featuremap.jobs.registry`). Follow it with
    :func:`featuremap.jobs.state.read_status` or :func:`featuremap.jobs.registry.list_jobs`.
    """
    from distributed import fire_and_forget

    pipeline = _as_pipeline(pipeline, input=input, array=array, output=output)
    plan = _plan_pipeline(
        pipeline, resume=resume, overwrite=overwrite, device=device, allow_large=allow_large
    )
    with cluster_client(None, scheduler, None, security) as client:
        devices = plan_devices(client, plan.device)
        # this process exits at once: the driver task adopts the job
        owner = state.new_owner(process=False)
        ticket = new_ticket(
            plan, owner, scheduler=scheduler, priority=priority, resume=resume_command
        )
        open_job(plan, owner, ticket.to_dict())
        record = job_record(plan, owner, ticket, "queued")
        publish(client, record)
        driver = client.submit(
            _job_on_cluster,
            plan,
            owner,
            devices,
            record,
            key=f"{task_prefix(owner.id)}driver",
            priority=DRIVER_PRIORITY,
        )
        fire_and_forget(driver)
        if on_submitted is not None:
            on_submitted(record, client.dashboard_link)
    return plan.store
