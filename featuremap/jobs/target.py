"""The output of a job: may it be written, and is it new, to be replaced, or to be finished?

Decided before anything is touched: the path must not be or contain the input, its folder
must be writable, a dangling link or an in-memory URL is refused; an existing path is replaced
(``--overwrite``) or finished (``--resume``) only when featuremap can prove it made it (its root
``zarr.json`` holds featuremap's record) and no live job owns it. A store whose bookkeeping is
damaged can still be replaced -- the root record is the proof -- but not resumed. ``--resume``
also refuses a different pipeline, input or version (the fingerprint) and an input whose
content changed since the job started.
"""

from __future__ import annotations

import os

from featuremap.errors import BrokenStoreError, InputError, option
from featuremap.io import (
    OutputStore,
    access_error,
    check_url,
    damaged_root,
    dangling_link,
    local_path,
    made_by_featuremap,
    nearest_existing,
)
from featuremap.io.permissions import check_removable, check_writable
from featuremap.jobs import state

__all__ = ["check_output_path", "existing_store", "plan_mode"]


def check_output_path(store: str, input_store: str) -> None:
    """The output may not be or contain the input, nor lie inside it; its folder must be
    writable; it may not be a dangling link or a store that vanishes (``memory://``)."""
    check_url(store, output=True)
    if dangling_link(store):
        raise InputError(
            f"output {store!r} is a symbolic link to something that does not exist; remove the "
            "link or choose another output"
        )
    out_path, in_path = local_path(store), local_path(input_store)
    if out_path is None:
        return
    if in_path is not None and (out_path == in_path or in_path in out_path.parents):
        raise InputError(
            f"output store {store!r} lies inside the input store {input_store!r}; choose an "
            "output outside it"
        )
    if in_path is not None and out_path in in_path.parents:
        raise InputError(
            f"output store {store!r} contains the input store {input_store!r}; choose another output"
        )
    if out_path.exists() and not out_path.is_dir():
        raise InputError(f"output store {store!r} exists and is a file, not a Zarr store")
    ancestor = nearest_existing(out_path.parent)
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(
            f"cannot create output store {store!r}: {str(ancestor)!r} is not a writable folder"
        )


def existing_store(store: str) -> OutputStore | None:
    """The existing output store, ``None`` when nothing is there.

    Raises
    ------
    InputError
        Something is there that featuremap cannot prove it made
        (:func:`featuremap.io.made_by_featuremap`): it is never replaced.
    BrokenStoreError
        featuremap made it, but its root ``zarr.json`` cannot be read.
    """
    path = local_path(store)
    if path is not None and (not path.exists() or not any(path.iterdir())):
        return None
    try:
        output: OutputStore | None = OutputStore.open(store, "r")
    except FileNotFoundError:
        if path is None:
            return None
        output = None
    except Exception as error:  # noqa: BLE001 -- a torn root zarr.json, or an unreachable store
        if made_by_featuremap(store):
            raise damaged_root(store, error) from None
        if path is None:  # an object store that cannot be read: credentials, network
            raise access_error("output store", store, error) from None
        output = None
    if output is None or not made_by_featuremap(store):
        raise InputError(
            f"output path {store!r} exists and is not a featuremap store; it is never replaced "
            "(only a store with featuremap's records is), choose another output"
        )
    return output


def plan_mode(
    store: str,
    *,
    resume: bool,
    overwrite: bool,
    fingerprint: str,
    input_content: dict[str, object] | None = None,
) -> tuple[str, OutputStore | None]:
    """``"new"``, ``"overwrite"`` or ``"resume"`` for ``store``, and the existing store if any."""
    if resume and overwrite:
        raise InputError("resume and overwrite exclude each other; choose one")
    try:
        existing = existing_store(store)
    except BrokenStoreError:
        if overwrite:  # featuremap made it: its torn root is no reason to keep it
            _check_replaceable(store)
            return "overwrite", None
        raise
    if existing is None:
        return "new", None
    if not (resume or overwrite):
        # first: a live job's store is busy, whatever the flags
        _check_busy(existing)
        raise InputError(
            f"output store {store!r} already exists; use {option('overwrite')} to replace it or "
            f"{option('resume')} to finish it"
        )
    if overwrite:
        _check_busy(existing)
        _check_replaceable(store)
        return "overwrite", existing
    state.check_takeover(existing, fingerprint=fingerprint)
    recorded = existing.root.get("input_content")
    if input_content is not None and recorded is not None and recorded != input_content:
        raise InputError(
            f"cannot resume {store!r}: its input changed since the job started (the sizes or "
            f"modification times of its chunks differ); use {option('overwrite')} to start again"
        )
    path = local_path(store)
    if path is not None:
        check_writable(store, path, action="resume")
    return "resume", existing


def _check_replaceable(store: str) -> None:
    """Prove that the whole store can be deleted before any of it is (a deletion that stops
    half-way destroys the old result and leaves no new one)."""
    path = local_path(store)
    if path is not None:
        check_removable(store, path)


def _check_busy(existing: OutputStore) -> None:
    """Refuse a store whose job is alive; damaged bookkeeping cannot show a live job."""
    try:
        state.check_takeover(existing, fingerprint=None)
    except BrokenStoreError:
        return
