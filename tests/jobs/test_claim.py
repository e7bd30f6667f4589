"""The claim file that makes opening a store exclusive (``featuremap.jobs.claim``): held and
released, refused while held, taken over only when its holder is gone or stale."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
from support.procs import dead_pid

from featuremap.errors import InputError, StoreBusyError
from featuremap.jobs import state
from featuremap.jobs.claim import CLAIM_TIMEOUT_S, claim_store
from featuremap.jobs.liveness import remember


def test_claim_is_exclusive_and_released(tmp_path):
    store = tmp_path / "nested" / "out.zarr"
    claim = tmp_path / "nested" / "out.zarr.lock"
    with claim_store(store, state.new_owner(), str(store)):
        holder = json.loads(claim.read_text())
        assert holder["pid"] == os.getpid()
        assert holder["time"] <= time.time()
        with (
            pytest.raises(StoreBusyError, match="being opened by another job"),
            claim_store(store, state.new_owner(), str(store)),
        ):
            pass
        assert claim.exists()  # the refused claim did not remove the holder's file
    assert not claim.exists()
    with claim_store(None, state.new_owner(), "s3://bucket/out.zarr"):  # remote: no claim
        pass


@pytest.mark.parametrize(
    ("holder", "stale"),
    [
        (
            lambda: {
                "host": socket.gethostname(),
                "pid": dead_pid(),
                "id": "a",
                "time": time.time(),
            },
            True,
        ),
        (
            lambda: {
                "host": "elsewhere",
                "pid": 1,
                "id": "b",
                "time": time.time() - 2 * CLAIM_TIMEOUT_S,
            },
            True,  # seen unchanged by this host for the timeout (below)
        ),
        # a host whose clock is behind ours: its claim looks old, but this host sees it first now
        (
            lambda: {
                "host": "elsewhere",
                "pid": 1,
                "id": "f",
                "time": time.time() - 2 * CLAIM_TIMEOUT_S,
            },
            False,
        ),
        # a live process on this host is never declared dead, however old its claim
        (
            lambda: {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "id": "c",
                "time": time.time() - 2 * CLAIM_TIMEOUT_S,
            },
            False,
        ),
        (
            lambda: {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "id": "d",
                "time": time.time(),
            },
            False,
        ),
        (lambda: {"host": "elsewhere", "pid": 1, "id": "e", "time": time.time()}, False),
    ],
    ids=[
        "dead owner",
        "other host, seen for the timeout",
        "other host, looks old, first seen now",
        "live owner, old",
        "live owner",
        "other host, fresh",
    ],
)
def test_leftover_claim(tmp_path, holder, stale):
    store = tmp_path / "out.zarr"
    claim = tmp_path / "out.zarr.lock"
    content = holder()
    claim.write_text(json.dumps(content))
    if content["id"] == "b":  # this host has watched that very claim for twice the timeout
        remember(str(claim), content, time.monotonic() - 2 * CLAIM_TIMEOUT_S)
    if stale:
        with claim_store(store, state.new_owner(), str(store)):
            assert json.loads(claim.read_text())["pid"] == os.getpid()
        assert not claim.exists()
    else:
        with pytest.raises(StoreBusyError), claim_store(store, state.new_owner(), str(store)):
            pass
        assert claim.exists()


@pytest.mark.parametrize("make", ["torn", "not ours", "folder"])
def test_what_is_not_a_featuremap_claim_is_never_removed(tmp_path, make):
    store = tmp_path / "out.zarr"
    claim = tmp_path / "out.zarr.lock"
    if make == "folder":
        claim.mkdir()
        (claim / "keep.txt").write_text("mine")
    else:
        claim.write_text("torn" if make == "torn" else json.dumps({"user": "my own lock"}))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with (
        pytest.raises(InputError, match="is not a featuremap claim"),
        claim_store(store, state.new_owner(), str(store)),
    ):
        pass
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_claim_appears_with_its_content(tmp_path):
    """Another job never sees a claim that is created but not yet written."""
    store = tmp_path / "out.zarr"
    claim = tmp_path / "out.zarr.lock"
    seen = []
    with claim_store(store, state.new_owner(), str(store)):
        seen.append(json.loads(claim.read_text()))
    assert seen[0]["id"]
    assert not list(tmp_path.glob(".*.tmp"))
