"""Store locations: local paths or fsspec URLs, and the local filesystem chores around them."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from featuremap.errors import InputError, describe, error_line

__all__ = [
    "PROTOCOL_EXTRAS",
    "check_node_path",
    "check_url",
    "dangling_link",
    "is_url",
    "local_path",
    "nearest_existing",
    "normalize_store",
    "replacing",
    "sweep_partial_files",
    "write_atomically",
]

#: The featuremap extra (or package) that brings each remote protocol's fsspec filesystem.
PROTOCOL_EXTRAS = {
    "s3": "featuremap[s3]",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
}
#: The longest name of one path segment (bytes, UTF-8): what every common filesystem allows.
MAX_SEGMENT_BYTES = 255
#: Protocols whose "stores" vanish with the process: refused as job outputs.
EPHEMERAL = ("memory",)


def is_url(store: str) -> bool:
    """``True`` for an fsspec URL such as ``s3://bucket/x.zarr`` (``file://`` excluded by
    :func:`normalize_store`)."""
    return "://" in store


def check_node_path(name: Any, what: str) -> str:
    """``name``, the path of an array or group *inside* a store (``--array``, an OME dataset's
    ``path``), checked to stay inside it: segments separated by ``/``, none empty, ``.`` or
    ``..``, none over :data:`MAX_SEGMENT_BYTES` bytes, no NUL or backslash.

    Raises
    ------
    InputError
        One line naming ``what`` and the fix.
    """
    if not isinstance(name, str) or not name.strip("/"):
        raise InputError(f"{what} must be a non-empty path string, got {describe(name)}")
    for segment in name.strip("/").split("/"):
        if segment in ("", ".", ".."):
            raise InputError(
                f"{what} {describe(name)} has a segment {segment!r}: a path inside the store "
                "has no empty, '.' or '..' segments; name the array itself (e.g. 'images/0')"
            )
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            raise InputError(
                f"{what} {describe(name)} has a segment of {len(segment.encode('utf-8', 'surrogatepass'))} "
                f"bytes; at most {MAX_SEGMENT_BYTES} bytes a segment: give its real name"
            )
        if "\x00" in segment or "\\" in segment:
            raise InputError(
                f"{what} {describe(name)} holds a NUL or a backslash; separate segments with '/'"
            )
    return name


def normalize_store(store: str) -> str:
    """A ``file://`` URL as the plain path it names (it works like one everywhere)."""
    return store[len("file://") :] if store.startswith("file://") else store


def local_path(store: str) -> Path | None:
    """The local filesystem path of a store (symbolic links resolved), or ``None`` for a remote
    URL. A symbolic link loop is an :class:`InputError` naming the path."""
    store = normalize_store(store)
    if is_url(store):
        return None
    try:
        return Path(store).expanduser().resolve()
    except (OSError, RuntimeError) as error:  # RuntimeError: Python < 3.13's "Symlink loop"
        raise InputError(
            f"path {store!r} cannot be resolved ({error}); it is probably a symbolic link loop: "
            "fix the link or give another path"
        ) from None


def check_url(store: str, *, output: bool = False) -> None:
    """Refuse a URL whose filesystem is not installed (naming the extra to install) or, for an
    output, one that does not persist (``memory://``)."""
    store = normalize_store(store)
    if not is_url(store):
        return
    protocol = store.split("://", 1)[0].lower()
    if output and protocol in EPHEMERAL:
        raise InputError(
            f"output {store!r} is an in-memory store that vanishes with each process; give a "
            "path or an object store URL"
        )
    import fsspec

    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError:
        extra = PROTOCOL_EXTRAS.get(protocol, f"the fsspec filesystem for {protocol}://")
        raise InputError(
            f"{store!r} needs the {protocol}:// filesystem, which is not installed; install "
            f"{extra} (pip install '{extra}')"
        ) from None
    except ValueError:
        raise InputError(
            f"{store!r} has an unknown protocol {protocol!r}; give a path or a URL fsspec knows"
        ) from None


def dangling_link(store: str) -> bool:
    """Whether ``store`` is a symbolic link whose target does not exist."""
    store = normalize_store(store)
    return not is_url(store) and os.path.islink(store) and not os.path.exists(store)


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def write_atomically(path: Path, data: bytes | memoryview) -> None:
    """Replace ``path`` by ``data`` in one step: written beside it as ``*.partial``, then renamed
    over it, so that a crash or a full disk leaves the old file or the new, never a torn one."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def sweep_partial_files(store: str) -> int:
    """Delete leftover ``*.partial`` files of interrupted atomic writes in a local store."""
    root = local_path(store)
    if root is None or not root.is_dir():
        return 0
    swept = 0
    for leftover in root.rglob("*.partial"):
        leftover.unlink(missing_ok=True)
        swept += 1
    return swept


def access_error(what: str, store: str, error: BaseException) -> InputError:
    """The one-line error for a store that cannot be reached (object stores: credentials,
    permissions, network), with the credentials hint where that is what is missing."""
    text = f"{type(error).__name__} {error}".lower()
    hint = (
        "; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or a profile) for s3://"
        if "credential" in text
        else ""
    )
    return InputError(f"cannot open {what} {store!r}: {error_line(error)}{hint}")


@contextmanager
def replacing(store: str) -> Iterator[bool]:
    """Replace a local store in one step as seen from its path: the old store is renamed aside
    (a hidden sibling), the block creates the new one at the free path, and only then is the
    old one deleted; when the block fails, what it created is removed and the old store is put
    back, unchanged. Yields whether the old store was set aside (``False`` for an object store,
    or when nothing is there: the caller replaces it in place).

    Deleting the old store first, entry by entry, could stop half-way (an entry the user may
    not remove), destroying the old result with nothing in its place
    (:func:`featuremap.io.permissions.check_removable` proves it will not, beforehand).
    """
    path = local_path(store)
    given = Path(normalize_store(store)).expanduser()
    if path is None or given.is_symlink() or not path.is_dir():  # a link is replaced in place
        yield False
        return
    aside = path.with_name(f".{path.name}.replaced-{os.getpid()}-{threading.get_ident()}")
    try:
        os.rename(path, aside)
        moved = True
    except OSError:  # a mount point cannot be moved: replaced in place (proven removable)
        moved = False
    if not moved:
        yield False
        return
    try:
        yield True
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        os.rename(aside, path)
        raise
    shutil.rmtree(aside, ignore_errors=True)
