"""The job layer: pipelines in, jobs planned once, run on a cluster, followed and verified.

===============  =============================================================================
module           holds
===============  =============================================================================
``plan``         :class:`JobPlan`, validated and resolved once, before anything is written
``sample``       the window of the first blocks ``output.codec: auto`` decides on
``target``       the output: may it be written; new, to be replaced, or to be finished
``claim``        the lock file that lets exactly one of two simultaneous jobs open a store
``state``        status, owner, heartbeat, fingerprint: what a store's job records mean
``processes``    this host's processes (start time, exited): whether an owner lives
``liveness``     another host's heartbeat, timed by this host's monotonic clock
``queued``       a submitted job before its driver starts
``execute``      opening the store, streaming the block tasks, finishing the store
``blocks``       the worker side: one task per block reads, computes and writes it
``share``        the fair share of a cluster's window between jobs running at once
``inputwatch``   the input is the one the job started with (identity checked again)
``worker_loss``  one line naming the worker (and its memory) when workers died under a block
``joblog``       the job's log, kept with its store
``registry``     the jobs a cluster knows: submitter, priority, progress
``tracking``     following a running job: its registry record and its log
``dashboard``    the jobs page of a cluster's dashboard (``dashboard_page``: its HTML and JSON)
``run``          :func:`run`, :func:`run_layers` and :func:`submit`
``verify``       :func:`verify_store`: every chunk against its done-marker, ``--repair``
===============  =============================================================================
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
