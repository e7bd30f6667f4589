"""The claim on a local output store: a lock file ``<store>.lock`` beside it.

Created with ``O_EXCL`` (atomic on a local or NFSv3+ filesystem) and held only while a job checks
the store and marks it ``running``, so that of two jobs started at once exactly one proceeds.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from featuremap.errors import InputError, StoreBusyError
from featuremap.jobs.state import owner_alive

__all__ = ["CLAIM_TIMEOUT_S", "claim_store"]

#: A claim file older than this belongs to a process killed while it opened a store (opening
#: takes well under a second locally) and is broken.
CLAIM_TIMEOUT_S = 60.0


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
