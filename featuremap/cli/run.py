"""``featuremap run``: run a pipeline to completion, with a progress bar and a summary."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from featuremap.cli._format import echo, echo_json, overflow_warning, plural, safe
from featuremap.cli._options import (
    job_options,
    prepare_job,
    refuse_together,
    resume_command,
    scheduler_address,
    selection_options,
    store_options,
)
from featuremap.cli._progress import progress_reporter
from featuremap.cluster.client import THREADS_MAX_BLOCKS

__all__ = ["run", "scheduler_warning"]

EPILOG = """\b
Examples:
  featuremap run pipelines/gabor-texture.yaml --workers 2
  featuremap run p.yaml --input data/images.zarr --array images --output out/f.zarr
  featuremap run p.yaml --scheduler tls://sched:8786 --tls-ca-file ca.pem \\
      --tls-cert client.pem --tls-key client.key
  featuremap run p.yaml --resume --json
  featuremap run p.yaml --input cells.ome.zarr --level 1 --region z=10:20 --channels DAPI
  featuremap run p.yaml --input era5.zarr --array t2m --axes time=t,latitude=y,longitude=x
"""


@contextmanager
def scheduler_warning(scheduler: str | None, security: Any) -> Iterator[None]:
    """Print the unauthenticated-scheduler warning as one ``featuremap: warning:`` line (instead
    of Python's two-line warning) around connecting to ``scheduler``."""
    from featuremap.cluster.client import (
        UnauthenticatedSchedulerWarning,
        insecure_scheduler_message,
    )

    message = None if scheduler is None else insecure_scheduler_message(scheduler, security)
    if message is not None:
        echo(f"featuremap: warning: {message}", err=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnauthenticatedSchedulerWarning)
        yield


@click.command(epilog=EPILOG)
@click.argument("pipeline", metavar="PIPELINE")
@store_options
@selection_options
@click.option(
    "--scheduler",
    metavar="ADDR",
    help="Dask scheduler address (tcp:// or tls://); default: DASK_SCHEDULER_ADDRESS (Dask's "
    "configuration), else a local cluster.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Workers of the local cluster: processes, or threads with --threads (default: cores).",
)
@click.option(
    "--processes/--threads",
    default=None,
    help="Run the local cluster as worker processes or as threads in this process, with Dask's "
    f"scheduler and dashboard (default: a job of up to {THREADS_MAX_BLOCKS} blocks runs on "
    "threads of this process without them, which start at once; a bigger one on processes).",
)
@click.option(
    "--dashboard",
    metavar="ADDR",
    help="Dashboard address of the local cluster (default 127.0.0.1, a free port; e.g. :8787 "
    "opens it to the network).",
)
@job_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as a JSON object.")
def run(
    pipeline: str,
    scheduler: str | None,
    workers: int | None,
    processes: bool | None,
    dashboard: str | None,
    as_json: bool,
    **job_flags: Any,
) -> None:
    """Run PIPELINE (a YAML file) on its input and write the features to its output store.

    An existing output store is refused unless --overwrite (replace it) or --resume (compute
    only the blocks not yet written, then finish).
    """
    from featuremap.jobs.dashboard_page import page_link
    from featuremap.jobs.run import run as run_job

    refuse_together(scheduler=scheduler, workers=workers)
    refuse_together(scheduler=scheduler, dashboard=dashboard)
    refuse_together(scheduler=scheduler, **{"processes/--threads": processes is not None})
    if workers is None and dashboard is None and processes is None:
        scheduler = scheduler_address(scheduler)  # Dask's configured scheduler, if any
    spec, job = prepare_job(pipeline, scheduler, **job_flags)
    resume = resume_command("run", spec, spec.output.store) if spec.output.store else None

    def announce(link: str) -> None:
        echo(f"featuremap: dashboard at {link}", err=True)
        if scheduler is None:  # featuremap's own cluster serves the jobs page
            echo(f"featuremap: jobs page at {page_link(link)}", err=True)

    with scheduler_warning(scheduler, job["security"]), progress_reporter() as progress:
        summary = run_job(
            spec,
            workers=workers,
            processes=processes,
            progress=progress,
            dashboard=dashboard,
            on_dashboard=announce,
            resume_command=resume,
            **job,
        )
    if as_json:
        echo_json(summary.to_dict())
        return
    echo(
        f"{summary.status}: {plural(summary.blocks_total, 'block')} ({summary.blocks_computed} "
        f"computed, {summary.blocks_skipped} skipped) in {summary.seconds:.1f} s -> "
        f"{safe(summary.store)}"
    )
    if summary.values_overflowed:
        echo(overflow_warning(summary.values_overflowed))
