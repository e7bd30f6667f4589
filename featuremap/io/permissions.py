"""May this user replace, or write into, an existing local output store? Proven before anything
is touched.

Replacing a store deletes it entry by entry; a deletion that stops half-way (a folder the user
may not write -- a colleague's ``_job/``) would leave neither the old result nor a new one. So
:func:`check_removable` walks the whole store first and refuses, naming the first entry that
could not be removed, while the store is still byte-identical. Removing an entry needs write
and search permission on the folder holding it (and, in a sticky folder such as ``/tmp``,
owning the entry or the folder); listing a folder needs read permission. ``os.access`` also
answers "no" for a folder made immutable (``chattr +i``), even to root.

:func:`check_writable` is the cheaper proof for jobs that write into a store (``--resume``,
``verify --repair``): the folders and documents featuremap updates, not every chunk folder.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from featuremap.errors import InputError

__all__ = ["check_removable", "check_writable"]

#: Permission to list a folder and to add or remove its entries.
_FOLDER_ACCESS = os.R_OK | os.W_OK | os.X_OK
#: Folders of chunk files (Zarr 3 ``c/``, and Zarr 2's numbered ones live under arrays): a job
#: that writes blocks creates what it needs there, so :func:`check_writable` does not walk them.
_CHUNK_FOLDER = "c"
#: The metadata documents featuremap updates in place (Zarr 3 and Zarr 2).
_DOCUMENTS = (".json", ".zarray", ".zgroup", ".zattrs")


def _refusal(action: str, store: str, entry: Path, why: str) -> InputError:
    return InputError(
        f"cannot {action} output store {store!r}: {str(entry)!r} {why}; nothing was changed -- "
        "ask the store's owner, or choose another output"
    )


def _may_unlink(folder: Path, folder_stat: os.stat_result, entry: os.DirEntry[str]) -> bool:
    """In a sticky folder only the entry's or the folder's owner (or root) may remove it."""
    if not folder_stat.st_mode & stat.S_ISVTX or os.geteuid() == 0:
        return True
    uid = os.geteuid()
    return uid in (folder_stat.st_uid, entry.stat(follow_symlinks=False).st_uid)


def _check_folder(action: str, store: str, folder: Path) -> list[os.DirEntry[str]]:
    """The entries of ``folder``, once it is proven that each may be removed from it."""
    if not os.access(folder, _FOLDER_ACCESS):
        raise _refusal(action, store, folder, "is a folder this user may not change")
    try:
        folder_stat = folder.stat()
        with os.scandir(folder) as listing:
            entries = list(listing)
    except OSError as error:
        raise _refusal(action, store, folder, f"cannot be listed ({error.strerror})") from None
    for entry in entries:
        if not _may_unlink(folder, folder_stat, entry):
            raise _refusal(action, store, Path(entry.path), "belongs to another user")
    return entries


def check_removable(store: str, path: Path) -> None:
    """Refuse, changing nothing, unless every entry of the local store at ``path`` (and the store
    folder itself) can be removed by this user.

    Raises
    ------
    InputError
        Naming the first entry that could not be removed.
    """
    if not path.is_dir() or path.is_symlink():
        return
    parent = path.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _refusal("replace", store, parent, "is a folder this user may not change")
    parent_stat, uid = parent.stat(), os.geteuid()
    sticky = parent_stat.st_mode & stat.S_ISVTX and uid != 0
    if sticky and uid not in (parent_stat.st_uid, path.stat().st_uid):
        raise _refusal("replace", store, path, "belongs to another user")
    pending = [path]
    while pending:
        folder = pending.pop()
        entries = _check_folder("replace", store, folder)
        pending.extend(Path(entry.path) for entry in entries if entry.is_dir(follow_symlinks=False))


def check_writable(store: str, path: Path, *, action: str) -> None:
    """Refuse, changing nothing, unless this user may write the store's records: every folder
    outside the chunk folders, and the metadata documents in them (``action`` names what was
    asked, e.g. ``"resume"``).

    Raises
    ------
    InputError
        Naming the first folder or document that may not be written.
    """
    if not path.is_dir():
        return
    pending = [path]
    while pending:
        folder = pending.pop()
        for entry in _check_folder(action, store, folder):
            if entry.is_dir(follow_symlinks=False):
                if entry.name == _CHUNK_FOLDER:
                    if not os.access(entry.path, _FOLDER_ACCESS):
                        raise _refusal(action, store, Path(entry.path), "may not be written")
                else:
                    pending.append(Path(entry.path))
            elif entry.name.endswith(_DOCUMENTS) and not os.access(entry.path, os.W_OK):
                raise _refusal(action, store, Path(entry.path), "may not be written")
