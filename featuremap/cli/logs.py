"""``featuremap logs``: a job's log, wherever its driver ran."""

from __future__ import annotations

from typing import Any

import click

from featuremap.cli._connect import cluster_connection
from featuremap.cli._format import echo
from featuremap.cli._options import cluster_options

__all__ = ["logs"]

EPILOG = """\b
Examples:
  featuremap logs out/mr8.zarr
  featuremap logs 3f2a9c01b7d4 --scheduler tcp://scheduler:8786
"""


@click.command(epilog=EPILOG)
@click.argument("target", metavar="JOB|STORE")
@cluster_options
def logs(target: str, scheduler: str | None, **tls: Any) -> None:
    """Print the log of job JOB (its id, from 'featuremap jobs') or of the job of output STORE:
    every run of it, who started it, on which worker, how it ended."""
    from featuremap.apps.jobs import job_log

    with cluster_connection(scheduler, required=False, **tls) as client:
        text = job_log(target, client)
    echo(text, nl=False)
