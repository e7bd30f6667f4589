"""``featuremap submit``: start a job on a running cluster and return at once."""

from __future__ import annotations

import shlex
from typing import Any

import click

from featuremap.cli._format import echo_json
from featuremap.cli._options import job_options, prepare_job, selection_options, store_options
from featuremap.cli.run import scheduler_warning

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
    "--scheduler", metavar="ADDR", required=True, help="Address of the running Dask scheduler."
)
@job_options
@click.option("--json", "as_json", is_flag=True, help="Print {store, pipeline} as a JSON object.")
def submit(pipeline: str, scheduler: str, as_json: bool, **job_flags: Any) -> None:
    """Submit PIPELINE to the cluster at --scheduler; the job goes on after this command exits.

    Prints the output store's path; follow the job with 'featuremap status STORE'.
    """
    from featuremap.jobs.run import submit as submit_job

    spec, job = prepare_job(pipeline, scheduler, **job_flags)
    with scheduler_warning(scheduler, job["security"]):
        store = submit_job(spec, **job)
    if as_json:
        echo_json({"store": store, "pipeline": spec.name, "scheduler": scheduler})
        return
    click.echo(store)
    click.echo(
        f"submitted {spec.name!r} to {scheduler}; follow it with: featuremap status {shlex.quote(store)}",
        err=True,
    )
