"""``verify_store`` (``featuremap.jobs.verify``) on real stores: clean, unmarked blocks and bad
markers, repair and resume, refusal while a job runs."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from featuremap.errors import StoreBusyError
from featuremap.io import OutputStore
from featuremap.jobs import state
from featuremap.jobs.run import run_layers
from featuremap.jobs.state import read_status
from featuremap.jobs.verify import verify_store


def test_verify_clean_store(finished):
    report = verify_store(str(finished[0]))
    assert report.clean
    assert (report.blocks_total, report.blocks_done, report.chunks_read) == (
        20,
        20,
        20,
    )
    assert report.to_dict()["clean"]
    assert report.status == "complete"


def test_verify_unmarked_and_bad_marker_then_repair_and_resume(finished, client):
    store, layers, features, source = finished
    (store / "_job" / "done" / "c" / "0" / "1").unlink()  # data on disk, marker lost: not damage
    (store / "_job" / "done" / "c" / "2" / "3").write_bytes(b"\x00not a chunk")
    report = verify_store(str(store))
    assert report.unmarked == ((0, 1),)
    assert report.bad_marker == ((2, 3),)
    assert report.damaged == ((2, 3),)
    assert not report.clean
    assert "2,3" in report.errors
    assert not verify_store(str(store)).repaired  # verifying alone changes nothing

    repaired = verify_store(str(store), repair=True)
    assert repaired.repaired
    assert repaired.damaged == ((2, 3),)
    assert not (store / "_job" / "done" / "c" / "2" / "3").exists()
    assert read_status(str(store))["status"] == "interrupted"
    summary = run_layers(layers, input=source, output=str(store), resume=True, client=client)
    assert (summary.blocks_computed, summary.blocks_skipped) == (2, 18)
    np.testing.assert_array_equal(zarr.open_group(str(store), mode="r")["features"][...], features)
    assert verify_store(str(store)).clean


def test_repair_refused_while_running(finished):
    store = finished[0]
    state.start_job(
        OutputStore.open(str(store), "r+"),
        owner=state.new_owner(),
        fingerprint="f" * 64,
        blocks_total=20,
    )
    with pytest.raises(StoreBusyError, match="still running"):
        verify_store(str(store), repair=True)
    assert verify_store(str(store)).clean  # a read-only check is always allowed
