"""Job bookkeeping inside an output store (DESIGN section 7).

Everything a job needs to be followed, resumed and refused lives in the store itself, so that
``featuremap status`` and ``--resume`` work from the store alone, after any crash:

* the **status** (``running`` -> ``complete`` | ``failed``) and progress in the root attributes
  under ``featuremap``; ``complete`` is written last;
* the **done-markers**: a ``uint8`` array ``_job/done`` over the block grid, one chunk per block,
  written ``1`` right after the block's data. A marker chunk that exists means the block is on
  disk; markers are the truth, ``blocks_done`` in the attributes is only a periodic summary;
* the **owner and heartbeat** of the running job in the ``_job`` group's attributes: a job whose
  heartbeat is older than :data:`HEARTBEAT_TIMEOUT_S` is reported ``interrupted``, and a store
  with a fresh heartbeat is never taken over by another job (:class:`StoreBusyError`);
* the **fingerprint** (pipeline hash + input identity + software version), which ``--resume``
  must match.

This module works on open Zarr groups and knows nothing of layers or Dask.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import zarr

from featuremap.errors import InputError, StoreBusyError, describe

__all__ = [
    "HEARTBEAT_INTERVAL_S",
    "HEARTBEAT_TIMEOUT_S",
    "JOB_GROUP",
    "MARKERS",
    "ROOT_KEY",
    "STATUSES",
    "check_takeover",
    "count_done",
    "create_markers",
    "done_blocks",
    "finish_job",
    "fingerprint",
    "job_status",
    "new_owner",
    "record_devices",
    "record_progress",
    "release",
    "start_job",
    "utc_now",
]

#: Root attribute key holding everything featuremap writes about the job.
ROOT_KEY = "featuremap"
JOB_GROUP = "_job"
MARKERS = f"{JOB_GROUP}/done"
STATUSES = ("running", "complete", "failed", "interrupted")
#: How often the client refreshes the heartbeat and ``blocks_done`` while it follows a job.
HEARTBEAT_INTERVAL_S = 5.0
#: A ``running`` job whose heartbeat is older than this is reported ``interrupted``.
HEARTBEAT_TIMEOUT_S = 60.0


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string (what every time attribute holds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fingerprint(pipeline_hash: str, input_identity: Mapping[str, Any], version: str) -> str:
    """sha256 of what decides the result: the pipeline, the input and featuremap's version."""
    canonical = json.dumps(
        {"pipeline": pipeline_hash, "input": dict(input_identity), "featuremap": version},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_owner() -> dict[str, Any]:
    """Who runs a job: host, process and a fresh id (a lock's owner)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "id": uuid.uuid4().hex}


def create_markers(group: zarr.Group, grid_shape: Sequence[int]) -> zarr.Array:
    """Create the ``_job/done`` marker array: one ``uint8`` chunk per output block, fill 0."""
    return group.create_array(
        MARKERS,
        shape=tuple(grid_shape),
        chunks=(1,) * len(grid_shape),
        dtype="uint8",
        fill_value=0,
        dimension_names=[f"block_{i}" for i in range(len(grid_shape))],
        config={"write_empty_chunks": True},
        overwrite=True,
    )


def done_blocks(group: zarr.Group) -> set[tuple[int, ...]]:
    """Block indices whose done-marker exists."""
    markers = group[MARKERS]
    return {tuple(int(i) for i in index) for index in np.argwhere(markers[...] == 1)}


def count_done(group: zarr.Group) -> int:
    """Number of blocks whose done-marker exists."""
    return int(np.count_nonzero(group[MARKERS][...] == 1))


def _update_root(group: zarr.Group, **fields: Any) -> None:
    attrs = dict(group.attrs.get(ROOT_KEY, {}))
    attrs.update(fields)
    group.attrs[ROOT_KEY] = attrs


def _beat(group: zarr.Group, owner: Mapping[str, Any], **fields: Any) -> None:
    group[JOB_GROUP].attrs.update({"owner": dict(owner), "heartbeat": time.time(), **fields})


def start_job(
    group: zarr.Group, *, owner: Mapping[str, Any], fingerprint: str, blocks_total: int,
    blocks_done: int = 0,
) -> None:
    """Mark the store ``running`` under ``owner`` (the fingerprint is written with it)."""
    _beat(group, owner, fingerprint=fingerprint)
    _update_root(
        group, status="running", fingerprint=fingerprint, blocks_total=blocks_total,
        blocks_done=blocks_done, started=utc_now(), finished=None, error=None,
    )


def record_progress(group: zarr.Group, *, owner: Mapping[str, Any], blocks_done: int) -> None:
    """Refresh the heartbeat and the ``blocks_done`` summary of a running job."""
    _beat(group, owner)
    _update_root(group, blocks_done=blocks_done)


def release(group: zarr.Group, *, owner: Mapping[str, Any]) -> None:
    """Clear the heartbeat: the job no longer runs (written before the final status)."""
    _beat(group, owner, heartbeat=None, released=utc_now())


def record_devices(
    group: zarr.Group, *, devices: Mapping[str, Any], blocks_per_device: Mapping[str, int]
) -> None:
    """Provenance of where blocks ran: the device plan and this run's block count per device."""
    _update_root(group, devices=dict(devices), blocks_per_device=dict(blocks_per_device))


def finish_job(
    group: zarr.Group, status: str, *, blocks_done: int, error: str | None = None
) -> None:
    """Write the final status (``complete``, ``failed`` or ``interrupted``); a job's last write."""
    _update_root(group, status=status, blocks_done=blocks_done, finished=utc_now(), error=error)


def job_status(group: zarr.Group) -> dict[str, Any]:
    """``status``, ``blocks_done``, ``blocks_total`` (+ timing and owner) of a store's job.

    ``blocks_done`` counts the markers; a ``running`` job with a stale heartbeat is reported
    ``interrupted``.
    """
    attrs = dict(group.attrs.get(ROOT_KEY, {}))
    job_attrs = dict(group[JOB_GROUP].attrs) if JOB_GROUP in group else {}
    status = attrs.get("status", "running")
    heartbeat = job_attrs.get("heartbeat")
    if status == "running" and (heartbeat is None or time.time() - heartbeat > HEARTBEAT_TIMEOUT_S):
        status = "interrupted"
    done = count_done(group) if MARKERS in group else 0
    return {
        "status": status,
        "blocks_done": done,
        "blocks_total": int(attrs.get("blocks_total", 0)),
        "started": attrs.get("started"),
        "finished": attrs.get("finished"),
        "heartbeat": heartbeat,
        "owner": job_attrs.get("owner"),
        "error": attrs.get("error"),
    }


def check_takeover(group: zarr.Group, path: str, *, fingerprint: str | None) -> dict[str, Any]:
    """Refuse to touch a store whose job is alive, or (``fingerprint`` given) resume a different job.

    Returns the store's :func:`job_status`.

    Raises
    ------
    StoreBusyError
        The store's job is ``running`` with a fresh heartbeat.
    InputError
        ``fingerprint`` is given and differs from the store's.
    """
    state = job_status(group)
    if state["status"] == "running":
        raise StoreBusyError(
            f"output store {path!r} belongs to a job that is still running "
            f"(owner {describe(state['owner'])}, {state['blocks_done']}/{state['blocks_total']} blocks); "
            f"wait for it, or if it is dead retry after {HEARTBEAT_TIMEOUT_S:.0f} s without a heartbeat"
        )
    stored = group.attrs.get(ROOT_KEY, {}).get("fingerprint")
    if fingerprint is not None and stored != fingerprint:
        raise InputError(
            f"cannot resume {path!r}: it was written by a different pipeline, input or featuremap "
            f"version (fingerprint {str(stored)[:12]}..., now {fingerprint[:12]}...); "
            "use --overwrite to replace it or another --output"
        )
    return state
