"""Files opened by path: regular files only, documents read to a size limit.

A FIFO where a file should be blocks whoever opens it until a writer comes (forever, usually); a
device such as ``/dev/zero`` never ends. Every file featuremap opens by path -- pipeline files,
weight files, Zarr metadata documents and chunks -- is opened without blocking, checked to be a
regular file on the open descriptor (no window between a check and the open), and documents are
read to at most :data:`MAX_DOCUMENT_BYTES`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from featuremap.errors import InputError

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "file_kind",
    "open_regular",
    "read_document",
    "regular_size",
]

#: The largest metadata document read (``zarr.json``, ``.zattrs``/``.zarray``, ``.zmetadata``,
#: job records, OME metadata): a store's consolidated metadata of thousands of arrays stays far
#: below it, ``/dev/zero`` or a 1 GB file posing as one is refused before it is read.
MAX_DOCUMENT_BYTES = 64 << 20

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words (``"a FIFO"``, ``"a regular file"``)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def _not_regular(what: str, path: Path | str, mode: int, fix: str) -> InputError:
    return InputError(f"{what} {str(path)!r} is not a regular file ({file_kind(mode)}); {fix}")


def regular_size(path: Path | str, what: str, fix: str) -> int:
    """The size of the regular file at ``path`` (``FileNotFoundError`` when it is missing); a
    FIFO, device, socket or directory is an :class:`InputError` naming ``what`` and ``fix``.
    :func:`os.stat` never blocks, whatever the file is."""
    mode_and_size = os.stat(path)
    if not stat.S_ISREG(mode_and_size.st_mode):
        raise _not_regular(what, path, mode_and_size.st_mode, fix)
    return mode_and_size.st_size


def open_regular(path: Path | str, what: str, fix: str) -> tuple[int, int]:
    """Open ``path`` for reading: ``(descriptor, size)``; the caller closes the descriptor.

    Opened with ``O_NONBLOCK`` (a FIFO without a writer would block the open itself), then
    checked on the descriptor, so a file swapped for a FIFO after a check cannot slip through.
    ``FileNotFoundError`` and the other :class:`OSError` pass through; a directory is an
    ``IsADirectoryError``, as :func:`open` has it.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(f"{str(path)!r} is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(what, path, info.st_mode, fix)
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor, info.st_size


def read_document(
    path: Path | str,
    what: str,
    fix: str,
    *,
    limit: int = MAX_DOCUMENT_BYTES,
    unit: str = "64 MiB",
) -> bytes:
    """The bytes of the regular file ``path``, refused (:class:`InputError`) past ``limit``
    bytes before they are read: by its size, and by what the read returns (a file that grows
    while it is read). ``unit`` is ``limit`` in words."""
    descriptor, size = open_regular(path, what, fix)
    with os.fdopen(descriptor, "rb") as stream:
        data = stream.read(limit + 1) if size <= limit else b""
    if size > limit or len(data) > limit:
        raise InputError(f"{what} {str(path)!r} is larger than {limit} bytes ({unit}); {fix}")
    return data
