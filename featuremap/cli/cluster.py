"""``featuremap cluster``: start featuremap clusters on batch systems.

``featuremap cluster slurm`` runs a TLS scheduler in this process (on a SLURM login node) and
submits worker jobs; pipelines then run on it with ``featuremap run|submit --scheduler ADDR``.
``--print-job-script`` shows the batch script of one worker job and starts nothing.
"""

from __future__ import annotations

import shlex
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from featuremap.cli._format import echo

__all__ = ["cluster"]

cluster = click.Group(
    "cluster",
    help="Start a featuremap cluster on a batch system (SLURM).",
)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so that a killed launcher still cancels its jobs."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _connect_hint(address: str, spec: Any) -> str:
    tls = (
        f" --tls-ca-file {shlex.quote(spec.tls_ca_file)} --tls-cert {shlex.quote(spec.tls_cert)}"
        f" --tls-key {shlex.quote(spec.tls_key)}"
        if spec.uses_tls
        else ""
    )
    return f"featuremap run PIPELINE --scheduler {address}{tls}"


@cluster.command("slurm")
@click.option("--partition", "-p", default=None, help="SLURM partition (default: the site's).")
@click.option("--account", "-A", default=None, help="SLURM account to charge.")
@click.option(
    "--gpus",
    type=int,
    default=0,
    show_default=True,
    help="GPUs per job: --gres=gpu:N and worker resource GPU=N.",
)
@click.option("--jobs", type=int, default=1, show_default=True, help="Worker jobs to submit.")
@click.option("--cores", type=int, default=8, show_default=True, help="CPU cores per job.")
@click.option("--memory", default="32GiB", show_default=True, help="Memory per job.")
@click.option("--walltime", default="01:00:00", show_default=True, help="Time limit per job.")
@click.option(
    "--processes",
    type=int,
    default=1,
    show_default=True,
    help="Worker processes per job (1 with GPUs).",
)
@click.option("--interface", default=None, help="Network interface of workers (e.g. ib0).")
@click.option("--local-directory", default=None, help="Worker scratch directory on the node.")
@click.option("--log-directory", default=None, help="Directory for the jobs' SLURM logs.")
@click.option(
    "--prologue",
    multiple=True,
    help="Shell line run before the worker (repeatable), e.g. 'module load cuda'.",
)
@click.option("--tls-ca-file", default=None, help="CA certificate (PEM) for Dask TLS.")
@click.option("--tls-cert", default=None, help="Certificate (PEM) for Dask TLS.")
@click.option("--tls-key", default=None, help="Private key (PEM) for Dask TLS.")
@click.option(
    "--port", type=int, default=0, show_default=True, help="Scheduler port (0: any free port)."
)
@click.option(
    "--dashboard-address", default=":8787", show_default=True, help="Scheduler dashboard address."
)
@click.option(
    "--print-job-script",
    is_flag=True,
    help="Print one worker job's batch script and exit; submits nothing.",
)
def slurm(port: int, dashboard_address: str, print_job_script: bool, **options: Any) -> None:
    """Run a scheduler here and featuremap workers as SLURM jobs, until Ctrl-C.

    Bad options raise InputError, which ``featuremap.cli.main`` reports as one line, exit 2.
    """
    from featuremap.cluster.slurm import SlurmSpec, render_job_script, start_slurm_cluster

    spec = SlurmSpec.from_dict(options)
    if print_job_script:
        echo(render_job_script(spec), nl=False)
        return
    slurm_cluster = start_slurm_cluster(spec, port=port, dashboard_address=dashboard_address)

    address = slurm_cluster.scheduler_address
    echo(
        f"featuremap: SLURM cluster up: scheduler {address}, {spec.jobs} job(s) of "
        f"{spec.cores} cores / {spec.memory}"
        + (f" / {spec.gpus} GPU(s)" if spec.gpus else "")
        + f", dashboard {slurm_cluster.dashboard_link}"
    )
    echo(f"run a pipeline on it:  {_connect_hint(address, spec)}")
    echo("stop with Ctrl-C (cancels the jobs)")
    with _terminate_as_interrupt():
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            echo("featuremap: stopping the cluster and cancelling its jobs")
        finally:
            slurm_cluster.close()
