"""``featuremap submit``: start a job on a running cluster and return at once."""

from __future__ import annotations

import shlex

import click

from featuremap.cli._common import echo_json, job_options, make_security, refuse_together, store_options
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
@click.option("--scheduler", metavar="ADDR", required=True, help="Address of the running Dask scheduler.")
@job_options
@click.option("--json", "as_json", is_flag=True, help="Print {store, pipeline} as a JSON object.")
def submit(
    pipeline: str,
    input_store: str | None,
    array: str | None,
    output_store: str | None,
    scheduler: str,
    device: str,
    overwrite: bool,
    resume: bool,
    tls_ca_file: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    as_json: bool,
) -> None:
    """Submit PIPELINE to the cluster at --scheduler; the job goes on after this command exits.

    Prints the output store's path; follow the job with 'featuremap status STORE'.
    """
    from featuremap._runner import submit as submit_job
    from featuremap.pipeline import load_pipeline

    refuse_together(overwrite=overwrite, resume=resume)
    spec = load_pipeline(pipeline).with_overrides(input=input_store, array=array, output=output_store)
    security = make_security(scheduler, tls_ca_file, tls_cert, tls_key)
    with scheduler_warning(scheduler, security):
        store = submit_job(
            spec, scheduler=scheduler, security=security, resume=resume, overwrite=overwrite,
            device=device,
        )
    if as_json:
        echo_json({"store": store, "pipeline": spec.name, "scheduler": scheduler})
        return
    click.echo(store)
    click.echo(f"submitted {spec.name!r} to {scheduler}; follow it with: featuremap status {shlex.quote(store)}", err=True)
