"""The claim file that makes opening a store exclusive (``featuremap.jobs.claim``): held and
released, refused while held, taken over only when its holder is gone or stale."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
from support.procs import dead_pid

from featuremap.errors import StoreBusyError
from featuremap.jobs import state
from featuremap.jobs.claim import CLAIM_TIMEOUT_S, claim_store


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
        (lambda: {"host": socket.gethostname(), "pid": dead_pid(), "time": time.time()}, True),
        (
            lambda: {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "time": time.time() - 2 * CLAIM_TIMEOUT_S,
            },
            True,
        ),
        (lambda: "torn", True),
        (lambda: {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}, False),
        (lambda: {"host": "elsewhere", "pid": 1, "time": time.time()}, False),
    ],
    ids=["dead owner", "old", "unreadable", "live owner", "other host, fresh"],
)
def test_leftover_claim(tmp_path, holder, stale):
    store = tmp_path / "out.zarr"
    claim = tmp_path / "out.zarr.lock"
    content = holder()
    claim.write_text(content if isinstance(content, str) else json.dumps(content))
    if stale:
        with claim_store(store, state.new_owner(), str(store)):
            assert json.loads(claim.read_text())["pid"] == os.getpid()
    else:
        with pytest.raises(StoreBusyError), claim_store(store, state.new_owner(), str(store)):
            pass
