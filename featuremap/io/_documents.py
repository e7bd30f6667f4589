"""Where a group's attributes live on disk: ``zarr.json`` (Zarr format 3) or ``.zattrs`` (format
2), and Zarr v2's consolidated copy of the root's, kept in step (:mod:`featuremap.io.output`
reads and replaces these documents directly, atomically)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from featuremap._files import read_document
from featuremap.io._paths import local_path, write_atomically

__all__ = ["ATTRIBUTES_DOCUMENT", "attributes_in", "update_consolidated_root"]

#: The document that holds a group's attributes: inside ``zarr.json`` (Zarr format 3), or all of
#: ``.zattrs`` (format 2).
ATTRIBUTES_DOCUMENT = {3: "zarr.json", 2: ".zattrs"}
#: Zarr v2's consolidated metadata (at the root of the store).
_CONSOLIDATED_V2 = ".zmetadata"
_FIX = "replace it with the file Zarr wrote, or give another store"


def attributes_in(document: Path) -> dict[str, Any]:
    """The attributes a group's ``document`` holds (:data:`ATTRIBUTES_DOCUMENT`)."""
    content = json.loads(read_document(document, "Zarr metadata document", _FIX))
    if document.name == ATTRIBUTES_DOCUMENT[2]:
        return dict(content)
    return dict(content.get("attributes") or {})


def update_consolidated_root(store: str, attributes: Mapping[str, Any]) -> None:
    """Keep the root's attributes in a Zarr v2 store's consolidated metadata in step with its
    ``.zattrs``: v2 copies them there (v3 does not), and xarray reads the copy -- the status
    written after consolidating (``complete``, or ``interrupted`` by ``verify --repair``) would
    otherwise read as the one before. Replaced as the documents are: renamed over locally, one
    put on an object store."""
    local = local_path(store)
    if local is not None:
        document = local / _CONSOLIDATED_V2

        def read() -> bytes:
            return read_document(document, "Zarr consolidated metadata", _FIX)

        def write(data: bytes) -> None:
            write_atomically(document, data)

    else:
        import fsspec

        filesystem, root = fsspec.core.url_to_fs(store)
        key = f"{root.rstrip('/')}/{_CONSOLIDATED_V2}"

        def read() -> bytes:
            return bytes(filesystem.cat_file(key))

        def write(data: bytes) -> None:
            filesystem.pipe_file(key, data)

    try:
        content = json.loads(read())
    except FileNotFoundError:  # not consolidated (yet)
        return
    content["metadata"][ATTRIBUTES_DOCUMENT[2]] = dict(attributes)
    write(json.dumps(content, indent=2).encode())
