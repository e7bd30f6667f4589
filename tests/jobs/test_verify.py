"""``verify_store`` (``featuremap.jobs.verify``) on real stores: clean, unmarked blocks and bad
markers, damaged coordinates, weights and metadata documents, repair and resume, refusal while
a job runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from support.stores import marker_chunk, unmark

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


def _flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def test_verify_unmarked_and_corrupted_block_then_repair_and_resume(finished, client):
    store, layers, features, source = finished
    unmark(store, [(0, 1)])  # data on disk, marker lost (a job killed before flushing): no damage
    _flip_byte(store / "features" / "c" / "0" / "2" / "3")
    report = verify_store(str(store))
    assert report.unmarked == ((0, 1),)
    assert report.corrupted == ((2, 3),)
    assert report.damaged == ((2, 3),)
    assert not report.clean
    assert "checksum" in report.errors["2,3"].lower()
    assert not verify_store(str(store)).repaired  # verifying alone changes nothing

    repaired = verify_store(str(store), repair=True)
    assert repaired.repaired
    assert not (store / "features" / "c" / "0" / "2" / "3").exists()
    assert read_status(str(store))["status"] == "interrupted"
    summary = run_layers(layers, input=source, output=str(store), resume=True, client=client)
    assert (summary.blocks_computed, summary.blocks_skipped) == (2, 18)
    np.testing.assert_array_equal(zarr.open_group(str(store), mode="r")["features"][...], features)
    assert verify_store(str(store)).clean


def test_unreadable_marker_chunk_is_rebuilt_from_the_blocks(finished):
    store = finished[0]
    (store / "features" / "c" / "0" / "1" / "4").unlink()  # marked done, chunk gone
    marker_chunk(store).write_bytes(b"\x00not a chunk")
    report = verify_store(str(store))
    assert len(report.bad_marker) == 20  # one marker chunk holds the bits of all 20 blocks
    assert "marker chunk 0" in report.errors
    repaired = verify_store(str(store), repair=True)
    assert repaired.repaired
    after = verify_store(str(store))
    assert after.clean
    assert after.blocks_done == 19  # every block that is on disk and decodes, and no other
    assert read_status(str(store))["blocks_done"] == 19


@pytest.mark.parametrize(
    ("damaged", "array", "repairable"),
    [
        ("y/c/0", "y", True),
        ("x/c/0", "x", True),
        ("layers/0/weight/c/0/0/0/0", "layers/0/weight", False),
    ],
)
def test_verify_reads_every_array(finished, damaged, array, repairable):
    store = finished[0]
    before = zarr.open_group(str(store), mode="r")[array][...]
    _flip_byte(store / damaged)
    report = verify_store(str(store))
    assert not report.clean
    assert list(report.arrays) == [array]
    assert "checksum" in report.arrays[array][0].lower()
    repaired = verify_store(str(store), repair=True)
    if repairable:  # coordinates are recomputed from the recorded geometry and placement
        assert repaired.unrepairable == ()
        assert verify_store(str(store)).arrays == {}
        np.testing.assert_array_equal(zarr.open_group(str(store), mode="r")[array][...], before)
    else:  # the weights are the pipeline's; only a new run restores them
        assert repaired.unrepairable == (array,)


@pytest.mark.parametrize("document", ["y/zarr.json", "layers/0/weight/zarr.json"])
def test_verify_reads_every_metadata_document(finished, document):
    store = finished[0]
    path = store / document
    path.write_text(path.read_text()[:40])  # torn
    report = verify_store(str(store))
    assert not report.clean
    assert document in report.documents


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
