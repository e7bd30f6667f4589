"""The claim on a local output store: a lock file ``<store>.lock`` beside it.

Held only while a job checks the store and marks it ``running``, so that of two jobs started at
once exactly one proceeds. The claim is created *with* its content in one atomic step (written
to a private temporary file, then hard-linked into place, which fails if a claim exists): a
second job never sees a half-written claim. A claim whose holder is gone -- a dead process on
this host, or one on another host older than :data:`CLAIM_TIMEOUT_S` -- is broken by renaming
it aside (only one job can win that rename); a live holder on this host is never declared dead,
however old its claim. A file at the claim's path that is not a featuremap claim (the user's own
``out.zarr.lock``, a folder) is never touched: the job is refused, naming it.
"""

from __future__ import annotations

import errno
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from featuremap._files import read_document
from featuremap.errors import InputError, StoreBusyError
from featuremap.jobs.liveness import heartbeat_liveness
from featuremap.jobs.state import JobOwner, owner_alive

__all__ = ["CLAIM_TIMEOUT_S", "claim_store"]

#: A claim of a holder on another host, older than this, is taken as left by a dead process
#: (opening a store takes well under a second).
CLAIM_TIMEOUT_S = 60.0
#: What a claim holds, so that featuremap recognises its own claims and only those.
_CLAIM_KEYS = frozenset({"host", "pid", "id", "time"})


def _claim_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".lock")


def _read_claim(claim: Path) -> dict[str, Any] | None:
    """The claim's holder, or ``None`` when the file there is not a featuremap claim."""
    try:
        if claim.is_symlink() or not claim.is_file():
            return None
        holder = json.loads(read_document(claim, "claim file", "remove it"))
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or not holder.keys() >= _CLAIM_KEYS:
        return None
    return holder


def _stale(claim: Path, holder: Mapping[str, Any]) -> bool:
    """Whether the claim was left by a dead job: its process on this host is gone, or (held
    from another host) this host has seen this very claim for :data:`CLAIM_TIMEOUT_S` of its
    own monotonic clock -- the holder's wall time is never compared with ours (its clock may
    be minutes off), so a claim first seen now is never stale."""
    alive = owner_alive(JobOwner.from_dict(holder))
    if alive is not None:
        return not alive
    seen = heartbeat_liveness(str(claim), dict(holder), timeout_s=CLAIM_TIMEOUT_S)
    return seen == "dead"


def _create(claim: Path, content: str) -> bool:
    """Create ``claim`` holding ``content`` atomically; ``False`` when a claim is there."""
    scratch = claim.with_name(f".{claim.name}.{uuid.uuid4().hex}.tmp")
    scratch.write_text(content)
    try:
        os.link(scratch, claim)
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        # no hard links on this filesystem: O_EXCL creation, content written right after
        try:
            descriptor = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w") as file:
            file.write(content)
    finally:
        scratch.unlink(missing_ok=True)
    return True


def _break(claim: Path, holder: Mapping[str, Any]) -> None:
    """Move a stale claim aside; if what was moved is not the claim judged stale (another job
    broke it and claimed meanwhile), put it back."""
    aside = claim.with_name(f".{claim.name}.{uuid.uuid4().hex}.stale")
    try:
        os.rename(claim, aside)
    except FileNotFoundError:
        return
    moved = _read_claim(aside)
    if moved is not None and moved.get("id") != holder.get("id"):
        with suppress(FileExistsError):
            os.link(aside, claim)
    aside.unlink(missing_ok=True)


def _refuse_foreign(claim: Path, store: str) -> InputError:
    return InputError(
        f"{str(claim)!r} is in the way of output store {store!r} and is not a featuremap claim; "
        "featuremap never removes what it did not create: move it, or choose another output"
    )


@contextmanager
def claim_store(store_path: Path | None, owner: JobOwner, store: str) -> Iterator[None]:
    """Hold the exclusive claim on a local store while a job checks and opens it.

    Remote stores (``store_path`` ``None``) have no claim: their jobs rely on the heartbeat
    and the fencing token alone.

    Raises
    ------
    StoreBusyError
        Another live job holds the claim.
    InputError
        Something that is not a featuremap claim is at the claim's path, or the folder is not
        writable.
    """
    if store_path is None:
        yield
        return
    claim = _claim_path(store_path)
    content = json.dumps({**owner.to_dict(), "time": time.time()})
    try:
        claim.parent.mkdir(parents=True, exist_ok=True)  # the store's folder, created anyway
        for _attempt in range(3):
            if _create(claim, content):
                break
            holder = _read_claim(claim)
            if holder is None:
                if claim.exists() or claim.is_symlink():
                    raise _refuse_foreign(claim, store)
                continue  # released meanwhile
            if not _stale(claim, holder):
                raise StoreBusyError(
                    f"output store {store!r} is being opened by another job (claim file "
                    f"{str(claim)!r}); wait for it, or remove that file if no featuremap job runs"
                )
            _break(claim, holder)
        else:
            raise StoreBusyError(f"output store {store!r} is contended by other jobs; retry")
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise InputError(
                f"cannot write next to output store {store!r} ({error.strerror}); choose an "
                "output in a writable folder"
            ) from None
        raise
    try:
        yield
    finally:
        if (_read_claim(claim) or {}).get("id") == owner.id:
            claim.unlink(missing_ok=True)
