"""Store locations: local paths or fsspec URLs, and the local filesystem chores around them."""

from __future__ import annotations

from pathlib import Path

__all__ = ["is_url", "local_path", "nearest_existing", "sweep_partial_files"]


def is_url(store: str) -> bool:
    """``True`` for an fsspec URL such as ``s3://bucket/x.zarr`` (``file://`` included)."""
    return "://" in store


def local_path(store: str) -> Path | None:
    """The local filesystem path of a store, or ``None`` for a remote URL."""
    if store.startswith("file://"):
        return Path(store[len("file://") :]).resolve()
    if is_url(store):
        return None
    return Path(store).expanduser().resolve()


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


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
