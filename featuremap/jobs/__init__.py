"""The job layer: pipelines in, jobs planned once, run on a cluster, followed and verified.

==============  ==============================================================================
module          holds
==============  ==============================================================================
``spec``        the pipeline file's schema, key by key, with each error's place
``pipeline``    :class:`Pipeline` and :func:`load_pipeline` (YAML read safely), building layers
``plan``        :class:`JobPlan`, validated and resolved once, before anything is written
``state``       status, owner, heartbeat, fingerprint: what a store's job records mean
``claim``       the lock file that lets exactly one of two simultaneous jobs open a store
``execute``     opening the store, sending the block tasks, finishing the store
``cluster``     the client: given, a scheduler address (TLS), or a local cluster
``run``         :func:`run`, :func:`run_layers` and :func:`submit`
``verify``      :func:`verify_store`: every chunk against its done-marker, ``--repair``
``slurm``       a Dask cluster of SLURM jobs (dask-jobqueue)
==============  ==============================================================================
"""

from __future__ import annotations

from featuremap.jobs.run import RunSummary, run, run_layers, submit
from featuremap.jobs.state import read_status
from featuremap.jobs.verify import VerifyReport, verify_store
from featuremap.pipeline.pipeline import Pipeline, load_pipeline

__all__ = [
    "Pipeline",
    "RunSummary",
    "VerifyReport",
    "load_pipeline",
    "read_status",
    "run",
    "run_layers",
    "submit",
    "verify_store",
]
