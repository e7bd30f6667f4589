"""Run featuremap workers as SLURM jobs through dask-jobqueue.

A :class:`SlurmSpec` says what one SLURM job looks like (cores, memory, walltime, partition,
GPUs) and how its workers reach the scheduler (TLS files). From it this module

* renders the batch script each job runs (:func:`render_job_script`), without a scheduler,
  so that it can be read or submitted by hand;
* starts a ``dask_jobqueue.SLURMCluster``: a TLS scheduler in this process that submits
  ``spec.jobs`` jobs (:func:`start_slurm_cluster`).

GPU jobs ask SLURM for ``--gres=gpu:N`` and declare ``--resources GPU=N`` on their worker, the
resource featuremap's runner requests for blocks it places on a GPU.

dask-jobqueue is the optional extra ``featuremap[slurm]``; it is imported only when a script
is rendered or a cluster started.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dask.utils import parse_bytes

from featuremap._validation import parse_int
from featuremap.errors import InputError, describe, option

if TYPE_CHECKING:
    from dask_jobqueue import SLURMCluster
    from distributed.security import Security

__all__ = [
    "SCHEDULER_PLACEHOLDER",
    "SlurmSpec",
    "render_job_script",
    "start_slurm_cluster",
    "tls_security",
]

#: Scheduler address written into a job script rendered without a running scheduler.
SCHEDULER_PLACEHOLDER = "tls://SCHEDULER-HOST:8786"

# SLURM's --time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_WALLTIME = re.compile(r"^(\d+-\d{1,2}(:\d{2}){0,2}|\d+(:\d{2}){0,2})$")
_PARTITION = re.compile(r"^[A-Za-z0-9_.,-]+$")


def parse_memory(value: Any) -> str:
    """Validate a per-job memory size such as ``"32GiB"`` and return it unchanged.

    Raises
    ------
    InputError
        If ``value`` is not a size Dask understands, or is not positive.
    """
    try:
        size = parse_bytes(value) if isinstance(value, str) else None
    except ValueError:
        size = None
    if not size or size <= 0:
        raise InputError(
            f"memory={describe(value)} is not a memory size: give e.g. '32GiB' or '500MB'"
        )
    return str(value)


def parse_walltime(value: Any) -> str:
    """Validate a SLURM time limit (``HH:MM:SS``, ``D-HH:MM:SS``, minutes...).

    Raises
    ------
    InputError
        If ``value`` is not in one of SLURM's ``--time`` formats.
    """
    if not isinstance(value, str) or not _WALLTIME.match(value):
        raise InputError(
            f"walltime={describe(value)} is not a SLURM time limit: give e.g. '01:30:00' or "
            "'2-00:00:00' (days-hours:minutes:seconds)"
        )
    return value


def parse_partition(name: str, value: Any) -> str | None:
    """Validate a SLURM partition or account name (``None`` means the site default).

    Raises
    ------
    InputError
        If ``value`` is empty or holds characters SLURM names never have (spaces, quotes).
    """
    if value is None:
        return None
    if not isinstance(value, str) or not _PARTITION.match(value):
        raise InputError(
            f"{name}={describe(value)} is not a SLURM name: use letters, digits, '_', '-', '.'"
        )
    return value


def parse_tls_files(ca_file: Any, cert: Any, key: Any) -> tuple[str, str, str] | None:
    """Validate the TLS trio: all three existing files, or none (``None``: plain TCP).

    Raises
    ------
    InputError
        If only some are given, or one of them is not a readable file.
    """
    given = {"tls_ca_file": ca_file, "tls_cert": cert, "tls_key": key}
    if all(path is None for path in given.values()):
        return None
    missing = [name for name, path in given.items() if path is None]
    if missing:
        raise InputError(
            f"{', '.join(missing)} missing: TLS needs tls_ca_file, tls_cert and tls_key together "
            "(make them with deploy/tls/make-certs.sh)"
        )
    for name, path in given.items():
        if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
            raise InputError(f"{name}={describe(path)} is not a file: give an existing PEM file")
    return str(ca_file), str(cert), str(key)


@dataclass(frozen=True)
class SlurmSpec:
    """One SLURM job of featuremap workers, and how many of them to run.

    Parameters
    ----------
    cores
        CPU cores per job (``--cpus-per-task``); the job's worker threads share them.
    memory
        Memory per job (``--mem``), e.g. ``"32GiB"``; the workers' memory limit.
    walltime
        SLURM time limit per job (``-t``), e.g. ``"01:00:00"``.
    partition, account
        SLURM partition (``-p``) and account (``-A``); ``None`` uses the site default.
    gpus
        GPUs per job: ``--gres=gpu:N`` and the worker resource ``GPU=N``.
    jobs
        How many jobs :func:`start_slurm_cluster` submits.
    processes
        Worker processes per job; must be 1 with GPUs (one process drives the job's GPUs).
    interface
        Network interface workers listen on (e.g. ``"ib0"``); ``None``: the default route.
    local_directory
        Worker scratch directory on the compute node (spilled data), e.g. ``"$TMPDIR"``.
    log_directory
        Where SLURM writes each job's stdout/stderr; ``None``: the submission directory.
    prologue
        Shell lines run before the worker starts (``module load ...``, ``source .venv/...``).
    tls_ca_file, tls_cert, tls_key
        PEM files for Dask's mutual TLS, used by the scheduler, the workers and the client
        (all in one shared file system); all three or none.
    """

    cores: int = 8
    memory: str = "32GiB"
    walltime: str = "01:00:00"
    partition: str | None = None
    account: str | None = None
    gpus: int = 0
    jobs: int = 1
    processes: int = 1
    interface: str | None = None
    local_directory: str | None = None
    log_directory: str | None = None
    prologue: tuple[str, ...] = ()
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def __post_init__(self) -> None:
        parse_int("cores", self.cores, minimum=1)
        parse_memory(self.memory)
        parse_walltime(self.walltime)
        parse_partition("partition", self.partition)
        parse_partition("account", self.account)
        parse_int("gpus", self.gpus, minimum=0)
        parse_int("jobs", self.jobs, minimum=0)
        parse_int("processes", self.processes, minimum=1)
        if self.gpus and self.processes != 1:
            raise InputError(
                f"processes={self.processes} with gpus={self.gpus} is not allowed: GPU jobs run "
                "one worker process; scale out with more jobs instead"
            )
        if self.cores % self.processes:
            raise InputError(
                f"cores={self.cores} is not divisible by processes={self.processes}: each "
                "worker process gets cores/processes threads"
            )
        prologue: Any = self.prologue  # a dataclass field: anything may have been passed
        if isinstance(prologue, str) or not all(isinstance(line, str) for line in prologue):
            raise InputError(
                f"prologue={describe(self.prologue)} is not allowed: give a list of shell lines"
            )
        object.__setattr__(self, "prologue", tuple(self.prologue))
        parse_tls_files(self.tls_ca_file, self.tls_cert, self.tls_key)

    @property
    def uses_tls(self) -> bool:
        """Whether the cluster speaks TLS (all TLS files given)."""
        return self.tls_ca_file is not None

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON/YAML-ready values."""
        fields = dataclasses.asdict(self)
        fields["prologue"] = list(self.prologue)
        return fields

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlurmSpec:
        """Build a spec from :meth:`to_dict` output or a config file section.

        Raises
        ------
        InputError
            On an unknown key (named, with the known ones) or an invalid value.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"slurm spec key {describe(unknown[0])} is unknown: allowed keys are "
                f"{', '.join(sorted(known))}"
            )
        return cls(**data)


def tls_security(ca_file: str, cert: str, key: str) -> Security:
    """A Dask ``Security`` that uses one certificate for scheduler, worker and client roles.

    Every process of a SLURM deployment reads the same files from the shared file system;
    Dask authenticates peers by the CA that signed them, not by role.
    """
    from distributed.security import Security

    parse_tls_files(ca_file, cert, key)
    certificates = {
        f"tls_{role}_{part}": path
        for role in ("scheduler", "worker", "client")
        for part, path in (("cert", cert), ("key", key))
    }
    return Security(tls_ca_file=ca_file, **certificates, require_encryption=True)


def _security(spec: SlurmSpec) -> Security | None:
    if not spec.uses_tls:
        return None
    # __post_init__ guarantees all three files once one is given.
    return tls_security(str(spec.tls_ca_file), str(spec.tls_cert), str(spec.tls_key))


def _job_options(spec: SlurmSpec) -> dict[str, Any]:
    """Keyword arguments shared by ``SLURMJob`` and ``SLURMCluster``."""
    worker_extra_args = ["--resources", f"GPU={spec.gpus}"] if spec.gpus else []
    job_extra_directives = [f"--gres=gpu:{spec.gpus}"] if spec.gpus else []
    return {
        "cores": spec.cores,
        "memory": spec.memory,
        "processes": spec.processes,
        "walltime": spec.walltime,
        "queue": spec.partition,
        "account": spec.account,
        "interface": spec.interface,
        "local_directory": spec.local_directory,
        "log_directory": spec.log_directory,
        "job_script_prologue": list(spec.prologue),
        "job_name": "featuremap-worker",
        "job_extra_directives": job_extra_directives,
        "worker_extra_args": worker_extra_args,
        "security": _security(spec),
        # Workers listen on TLS too, so that peer-to-peer transfers are encrypted as well.
        "protocol": "tls://" if spec.uses_tls else None,
    }


def _import_jobqueue() -> Any:
    try:
        import dask_jobqueue
    except ImportError as error:
        raise InputError(
            "dask-jobqueue is not installed: install featuremap[slurm] "
            "(pip install 'featuremap[slurm]') to use SLURM"
        ) from error
    return dask_jobqueue


def render_job_script(spec: SlurmSpec, scheduler_address: str = SCHEDULER_PLACEHOLDER) -> str:
    """The batch script of one worker job, as ``sbatch`` would receive it.

    Parameters
    ----------
    spec
        The job to describe.
    scheduler_address
        Address the worker connects to; the default is a placeholder to edit by hand.
    """
    jobqueue = _import_jobqueue()
    job = jobqueue.slurm.SLURMJob(scheduler_address, name="featuremap-worker", **_job_options(spec))
    return str(job.job_script())


def start_slurm_cluster(
    spec: SlurmSpec, *, port: int = 0, dashboard_address: str = ":8787"
) -> SLURMCluster:
    """Start a scheduler here and submit ``spec.jobs`` SLURM jobs of workers to it.

    Parameters
    ----------
    spec
        The jobs to run.
    port
        Scheduler port (0: any free port; the address is ``cluster.scheduler_address``).
    dashboard_address
        Where the scheduler serves its dashboard.

    Raises
    ------
    InputError
        If ``sbatch`` is not on ``PATH`` (not a SLURM submission host) or dask-jobqueue is
        missing.
    """
    jobqueue = _import_jobqueue()
    if spec.jobs and shutil.which("sbatch") is None:
        raise InputError(
            "sbatch not found on PATH: start the cluster on a SLURM login node, or print the "
            f"job script with {option('print_job_script')} and submit it yourself"
        )
    cluster = jobqueue.SLURMCluster(
        **_job_options(spec),
        scheduler_options={"port": port, "dashboard_address": dashboard_address},
    )
    cluster.scale(jobs=spec.jobs)
    return cluster
