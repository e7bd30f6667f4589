"""Replacing a local store in one step (:func:`featuremap.io._paths.replacing`): the old store
is set aside whole, put back unchanged when creating the new one fails, and deleted only after
it succeeded -- never a half-deleted store at the path."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.procs import tree_digest

from featuremap.io._paths import replacing


def _old_store(tmp_path: Path) -> Path:
    store = tmp_path / "out.zarr"
    (store / "_job").mkdir(parents=True)
    (store / "zarr.json").write_text('{"old": true}')
    (store / "_job" / "zarr.json").write_text('{"job": 1}')
    return store


def test_a_failed_replacement_puts_the_old_store_back_unchanged(tmp_path):
    store = _old_store(tmp_path)
    before = tree_digest(store)
    seen = []

    def fail_half_way() -> None:
        with replacing(str(store)) as set_aside:
            seen.append((set_aside, store.exists()))
            store.mkdir()
            (store / "zarr.json").write_text('{"new": "half"}')
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        fail_half_way()
    assert seen == [(True, False)]  # set aside: the path was free for the new store
    assert tree_digest(store) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.zarr"]


def test_a_successful_replacement_leaves_only_the_new_store(tmp_path):
    store = _old_store(tmp_path)
    with replacing(str(store)):
        store.mkdir()
        (store / "zarr.json").write_text('{"new": true}')
    assert (store / "zarr.json").read_text() == '{"new": true}'
    assert not (store / "_job").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.zarr"]
