"""``featuremap cluster``: start featuremap clusters, on this machine or on batch systems.

``featuremap cluster local`` keeps a warm cluster on loopback (scheduler and worker processes,
featuremap already imported in them) until Ctrl-C, so that jobs run with ``--scheduler ADDR``
(or ``DASK_SCHEDULER_ADDRESS``) skip a local cluster's start and close.
``featuremap cluster slurm`` runs a TLS scheduler in this process (on a SLURM login node) and
submits worker jobs; pipelines then run on it with ``featuremap run|submit --scheduler ADDR``.
``--print-job-script`` shows the batch script of one worker job and starts nothing.
"""

from __future__ import annotations

import shlex
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from featuremap.cli._format import echo
from featuremap.errors import InputError, error_line

__all__ = ["cluster"]

cluster = click.Group(
    "cluster",
    help="Start a featuremap cluster: a warm one on this machine, or on SLURM.",
)

#: What a warm cluster's workers import as they start: everything a block task runs.
WORKER_PRELOAD = ("featuremap.jobs.blocks",)


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM (Ctrl-C, ``kill``) while inside: the command then
    closes its cluster and exits 0 rather than unwinding as an interrupted job."""
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


#: Signals that stop a long-running ``cluster`` command.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _check_port_free(host: str, port: int) -> None:
    """Refuse a taken scheduler port in one line, before any process starts (Dask's own
    failure is a nested traceback after its start timeout)."""
    if port == 0:
        return
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise InputError(
                f"cannot start a scheduler on {host}:{port}: {error_line(error)}; give another "
                "--port (0: any free port) or stop what uses it"
            ) from None


@cluster.command("local")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Worker processes, one thread each (default: one per core).",
)
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=8786,
    show_default=True,
    help="Scheduler port on 127.0.0.1 (0: any free port).",
)
@click.option(
    "--dashboard-address",
    default=None,
    help="Dashboard address (default 127.0.0.1, a free port; e.g. :8787 opens it to the network).",
)
def local(workers: int | None, port: int, dashboard_address: str | None) -> None:
    """Keep a local cluster running on 127.0.0.1 until Ctrl-C, and print its address.

    Jobs then run on it with 'featuremap run PIPELINE --scheduler ADDR' (or with
    DASK_SCHEDULER_ADDRESS=ADDR set) and start at once: the workers are up, featuremap is
    imported in them, and nothing is started or closed per job.
    """
    from featuremap.cluster.client import LOOPBACK, start_local_cluster
    from featuremap.jobs.dashboard_page import page_link
    from featuremap.jobs.run import DASHBOARD_PRELOAD

    _check_port_free(LOOPBACK, port)
    with _stop_on_signals() as stop:
        warm = start_local_cluster(
            workers,
            True,
            dashboard_address,
            port=port,
            preload=WORKER_PRELOAD,
            scheduler_preload=(DASHBOARD_PRELOAD,),
        )
        with warm:
            address = warm.scheduler_address
            echo(
                f"featuremap: local cluster up: scheduler {address}, "
                f"{len(warm.workers)} worker process(es), dashboard {warm.dashboard_link}"
            )
            echo(f"jobs page:             {page_link(warm.dashboard_link)}")
            echo(f"run a pipeline on it:  featuremap run PIPELINE --scheduler {address}")
            echo(f"or for every command:  export DASK_SCHEDULER_ADDRESS={address}")
            echo("stop with Ctrl-C")
            stop.wait()
            echo("featuremap: stopping the local cluster")


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
