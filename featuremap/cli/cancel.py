"""``featuremap cancel``: stop a job of a shared cluster, leaving its store resumable."""

from __future__ import annotations

from typing import Any

import click

from featuremap.cli._connect import cluster_connection
from featuremap.cli._format import echo, echo_json, safe
from featuremap.cli._options import cluster_options

__all__ = ["cancel"]

EPILOG = """\b
Examples:
  featuremap cancel 3f2a9c01b7d4 --scheduler tcp://scheduler:8786
  featuremap cancel out/mr8.zarr           # by its store: no scheduler needed
  featuremap run p.yaml --resume           # finish it later

The job's blocks stop within seconds (running ones are not written, none starts); the store
reads 'cancelled' and --resume finishes it.
"""


@click.command(epilog=EPILOG)
@click.argument("target", metavar="JOB|STORE")
@cluster_options
@click.option("--json", "as_json", is_flag=True, help="Print {id, store, by} as a JSON object.")
def cancel(target: str, scheduler: str | None, as_json: bool, **tls: Any) -> None:
    """Cancel the running or queued job JOB (its id, from 'featuremap jobs') or the job writing
    output STORE."""
    from featuremap.apps.jobs import cancel as cancel_job

    with cluster_connection(scheduler, required=False, **tls) as client:
        done = cancel_job(target, client)
    if as_json:
        echo_json(done.to_dict())
        return
    echo(
        f"cancelled job {done.id[:12]} writing {safe(done.store)}; finish it with "
        f"'featuremap run PIPELINE --output {safe(done.store)} --resume'"
    )
