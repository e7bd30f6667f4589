"""``featuremap submit``: start a job on a running cluster and return at once."""

from __future__ import annotations

import shlex
from typing import Any

import click

from featuremap.cli._format import echo, echo_json
from featuremap.cli._options import (
    job_options,
    prepare_job,
    scheduler_address,
    selection_options,
    store_options,
)
from featuremap.cli.run import scheduler_warning
from featuremap.errors import InputError

__all__ = ["submit"]

EPILOG = """\b
Examples:
  featuremap submit pipelines/mr8.yaml --scheduler tcp://scheduler:8786
  featuremap status out/mr8.zarr          # follow the job
"""


@click.command(epilog=EPILOG)
@click.argument("pipeline", metavar="PIPELINE")
@store_options
@selection_options
@click.option(
    "--scheduler",
    metavar="ADDR",
    help="Address of the running Dask scheduler; default: DASK_SCHEDULER_ADDRESS or Dask's "
    "configuration.",
)
@job_options
@click.option("--json", "as_json", is_flag=True, help="Print {store, pipeline} as a JSON object.")
def submit(pipeline: str, scheduler: str | None, as_json: bool, **job_flags: Any) -> None:
    """Submit PIPELINE to the cluster at --scheduler; the job goes on after this command exits.

    Prints the output store's path; follow the job with 'featuremap status STORE' or
    'featuremap jobs', stop it with 'featuremap cancel JOB'.
    """
    from featuremap.jobs.run import submit as submit_job

    address = scheduler_address(scheduler)
    if address is None:
        raise InputError("no scheduler: give --scheduler ADDR or set DASK_SCHEDULER_ADDRESS")
    spec, job = prepare_job(pipeline, address, **job_flags)
    seen: dict[str, Any] = {}

    def submitted(record: Any, dashboard: str | None) -> None:
        seen.update(id=record.id[:12], dashboard=dashboard)

    with scheduler_warning(address, job["security"]):
        store = submit_job(spec, on_submitted=submitted, **job)
    if as_json:
        echo_json({"store": store, "pipeline": spec.name, "scheduler": address, **seen})
        return
    echo(store)
    echo(
        f"submitted {spec.name!r} to {address} as job {seen['id']}; follow it with: featuremap "
        f"status {shlex.quote(store)} (or featuremap jobs), stop it with: featuremap cancel "
        f"{seen['id']}",
        err=True,
    )
    if seen.get("dashboard"):
        echo(f"featuremap: dashboard at {seen['dashboard']}", err=True)
