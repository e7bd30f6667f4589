"""Job bookkeeping inside an output store (DESIGN section 7).

Everything a job needs to be followed, resumed and refused lives in the store itself, so that
``featuremap status`` and ``--resume`` work from the store alone, after any crash:

* the **status** (``running`` -> ``complete`` | ``failed``) and progress in the root attributes
  under ``featuremap``; ``complete`` is written last;
* the **done-markers**: a ``uint8`` array ``_job/done`` over the block grid, one chunk per block,
  written ``1`` right after the block's data. A marker chunk that exists means the block is on
  disk; markers are the truth, ``blocks_done`` in the attributes is only a periodic summary;
* the **owner and heartbeat** of the running job in the ``_job`` group's attributes. The process
  that follows the job (the ``run`` client, or the task of a submitted job) rewrites the
  heartbeat every :data:`HEARTBEAT_INTERVAL_S`; a ``running`` job is reported ``interrupted``
  when its heartbeat is older than :data:`HEARTBEAT_TIMEOUT_S` (about 4 periods) or, on the
  owner's own host, at once when the owner process is gone. A store whose job is alive is never
  taken over by another job (:class:`StoreBusyError`);
* the **claim**: a lock file ``<store>.lock`` beside a local store, created with ``O_EXCL`` and
  held only while a job checks the store and marks it ``running``, so that of two jobs started
  at once exactly one proceeds (:func:`claim_store`);
* the **fingerprint** (pipeline hash + input identity + software version), which ``--resume``
  must match.

This module works on open Zarr groups and knows nothing of layers or Dask.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from featuremap.errors import InputError, StoreBusyError, describe

__all__ = [
    "adopt_job",
    "CLAIM_TIMEOUT_S",
    "HEARTBEAT_INTERVAL_S",
    "HEARTBEAT_TIMEOUT_S",
    "JOB_GROUP",
    "MARKERS",
    "ROOT_KEY",
    "check_takeover",
    "claim_store",
    "count_done",
    "create_markers",
    "done_blocks",
    "finish_job",
    "fingerprint",
    "job_status",
    "new_owner",
    "owner_alive",
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
#: How often the client refreshes the heartbeat and ``blocks_done`` while it follows a job.
HEARTBEAT_INTERVAL_S = 5.0
#: A ``running`` job whose heartbeat is older than this is reported ``interrupted``: four missed
#: beats, so a client busy for a moment (a slow object store, a GIL-bound callback) is not
#: declared dead.
HEARTBEAT_TIMEOUT_S = 20.0
#: A claim file older than this belongs to a process killed while it opened a store (opening
#: takes well under a second locally) and is broken.
CLAIM_TIMEOUT_S = 60.0


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


def new_owner(*, process: bool = True) -> dict[str, Any]:
    """Who runs a job: host, process and a fresh id (a lock's owner).

    ``process=False`` leaves the process out (``pid: None``): a submitted job, whose submitting
    process exits at once and whose task takes the ownership over when it starts; until then only
    the heartbeat tells whether it lives.
    """
    return {"host": socket.gethostname(), "pid": os.getpid() if process else None,
            "id": uuid.uuid4().hex}


def owner_alive(owner: Mapping[str, Any] | None) -> bool | None:
    """Whether the owner process still exists: ``None`` when that cannot be told from here
    (another host, or no process recorded)."""
    if not owner or owner.get("pid") is None or owner.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(owner["pid"]), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _claim_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".lock")


def _stale_claim(claim: Path) -> bool:
    try:
        holder = json.loads(claim.read_text())
        age = time.time() - float(holder["time"])
    except (OSError, ValueError, KeyError, TypeError):
        return True  # unreadable: torn by a kill between create and write
    return age > CLAIM_TIMEOUT_S or owner_alive(holder) is False


@contextmanager
def claim_store(store_path: Path | None, owner: Mapping[str, Any], store: str) -> Iterator[None]:
    """Hold the exclusive claim on a local store while a job checks and opens it.

    The claim is a file ``<store>.lock`` beside the store created with ``O_EXCL`` (atomic on a
    local or NFSv3+ filesystem) and removed on exit; one left by a killed process is broken when
    its owner is dead or it is older than :data:`CLAIM_TIMEOUT_S`. Remote stores
    (``store_path`` ``None``) have no claim: their jobs rely on the heartbeat alone.

    Raises
    ------
    StoreBusyError
        Another live job holds the claim.
    """
    if store_path is None:
        yield
        return
    claim = _claim_path(store_path)
    holder = json.dumps({**dict(owner), "time": time.time()})
    claim.parent.mkdir(parents=True, exist_ok=True)  # the store's folder, created with it anyway
    for attempt in range(2):
        try:
            descriptor = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if attempt == 0 and _stale_claim(claim):
                claim.unlink(missing_ok=True)
                continue
            raise StoreBusyError(
                f"output store {store!r} is being opened by another job (claim file "
                f"{str(claim)!r}); wait for it, or remove that file if no featuremap job runs"
            ) from None
        except OSError as error:
            if error.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise InputError(
                    f"cannot write next to output store {store!r} ({error.strerror}); choose an "
                    "output in a writable folder"
                ) from None
            raise
        break
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(holder)
        yield
    finally:
        claim.unlink(missing_ok=True)


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


def _marked(group: zarr.Group) -> np.ndarray:
    """``True`` where a block's done-marker is set; a marker chunk that cannot be decoded (a
    damaged file) counts as not set, so the block is recomputed rather than the job stopped."""
    markers = group[MARKERS]
    try:
        return markers[...] == 1
    except Exception:  # any decode error: read marker by marker, as featuremap verify does
        marked = np.zeros(markers.shape, dtype=bool)
        for index in np.ndindex(*markers.shape):
            try:
                marked[index] = markers[index] == 1
            except Exception:
                pass  # unreadable: not done
        return marked


def done_blocks(group: zarr.Group) -> set[tuple[int, ...]]:
    """Block indices whose done-marker exists."""
    return {tuple(int(i) for i in index) for index in np.argwhere(_marked(group))}


def count_done(group: zarr.Group) -> int:
    """Number of blocks whose done-marker exists."""
    return int(np.count_nonzero(_marked(group)))


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


def adopt_job(group: zarr.Group, owner: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Take a submitted job over in this process: same job id, this host and pid.

    Raises
    ------
    StoreBusyError
        The store now belongs to another job (it was resumed or overwritten meanwhile).
    """
    current = dict(group[JOB_GROUP].attrs).get("owner") or {}
    if current.get("id") != owner["id"]:
        raise StoreBusyError(
            f"output store {path!r} was taken over by another job (owner {describe(current)}); "
            "this submitted job stops"
        )
    adopted = {**dict(owner), "host": socket.gethostname(), "pid": os.getpid()}
    _beat(group, adopted)
    return adopted


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

    ``blocks_done`` counts the markers; a ``running`` job with a stale heartbeat, or whose owner
    process is known to be gone, is reported ``interrupted``.
    """
    attrs = dict(group.attrs.get(ROOT_KEY, {}))
    job_attrs = dict(group[JOB_GROUP].attrs) if JOB_GROUP in group else {}
    status = attrs.get("status", "running")
    heartbeat = job_attrs.get("heartbeat")
    stale = heartbeat is None or time.time() - heartbeat > HEARTBEAT_TIMEOUT_S
    if status == "running" and (stale or owner_alive(job_attrs.get("owner")) is False):
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
