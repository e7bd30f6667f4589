"""Proportional costs (README "Safety", issue 23 part B): what a store costs on disk and what
``verify`` and ``status`` cost follow the data, never a grid or a shard size picked for bytes
alone.

* ``shards: auto`` never makes a shard larger than the array (D11);
* ``verify`` streams a store's chunks in bounded memory (D12);
* ``status`` costs what the markers that exist cost, and store records are checked against the
  arrays they describe (D8, D17): in ``tests/cli/test_records.py``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from support.procs import ENV

from featuremap.io.create import create_output
from featuremap.io.layout import FEATURES
from featuremap.io.sink import write_block
from featuremap.jobs import state
from featuremap.jobs.execute import open_job
from featuremap.jobs.run import _plan_pipeline
from featuremap.pipeline import load_pipeline

TILES = "input: {store: tiles.zarr}\noutput: {store: out.zarr}\nlayers: [{conv: {bank: {type: box, size: 3}, padding: same}}]\n"


def _stored_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def test_automatic_shards_never_outgrow_small_images(tmp_path, monkeypatch):
    """D11: 5 000 images of 8 x 8 are 5 000 chunks, past the count where ``shards: auto`` groups
    chunks; it once made each a shard of 8192 x 8192 fill values around the 8 x 8 image (256 MB
    per image on disk). Planned as ``run`` plans it, created, and one block written as a worker
    writes it: the shard is within the image, the block's object a few hundred bytes."""
    monkeypatch.chdir(tmp_path)
    # metadata only: planning never reads the input's chunks, and writing 5 000 costs seconds
    zarr.create_array(
        "tiles.zarr",
        shape=(5000, 8, 8),
        chunks=(1, 8, 8),
        dtype="float32",
        dimension_names=["t", "y", "x"],
    )
    (tmp_path / "tiles.yaml").write_text(TILES)
    plan = _plan_pipeline(load_pipeline("tiles.yaml"), resume=False, overwrite=False, device="cpu")
    layout = plan.layout
    shards = layout.shards or layout.chunks
    assert all(s <= n for s, n in zip(shards, layout.shape, strict=True)), (shards, layout.shape)

    store = create_output(
        str(tmp_path / "out.zarr"),
        layout=layout,
        geometry_attrs={},
        weights=(),
        root_attrs={},
        job_attrs={"owner": {"id": "test"}},
    )
    block = (0,) * len(layout.grid_shape)
    slices = layout.block_slices(block)
    values = np.ones(tuple(s.stop - s.start for s in slices), dtype=np.float32)
    write_block(store.path, layout, slices, values, session="test")
    written = _stored_bytes(tmp_path / "out.zarr" / FEATURES / "c")
    assert 0 < written < 64 * 1024, written  # 256 B of features (plus the codec's framing)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (VERIFY_MEMORY, VERIFY_MEMORY))


#: What ``verify`` may use on the store below: listing every inner chunk of every block (65 536
#: per block, 200 blocks) took gigabytes.
VERIFY_MEMORY = 3 << 29  # 1.5 GiB


@pytest.mark.slow
def test_verify_streams_a_store_of_many_tiles_in_bounded_memory(tmp_path, monkeypatch):
    """D12: 200 images of 8 x 8 stored with shards of 2048 x 2048 (given explicitly: ``auto`` no
    longer makes them) and one block written: ``verify`` once enumerated every inner chunk of
    every block (13 million regions) and died of ``MemoryError``. It now reads the blocks on
    disk, the inner chunks inside the array, in batches: clean, in 1.5 GiB, in seconds."""
    monkeypatch.chdir(tmp_path)
    data = np.random.default_rng(6).random((200, 8, 8), dtype=np.float32)
    zarr.create_array("tiles.zarr", data=data, chunks=(1, 8, 8), dimension_names=["t", "y", "x"])
    (tmp_path / "tiles.yaml").write_text(
        TILES.replace(
            "{store: out.zarr}", "{store: out.zarr, chunks: [8, 8], shards: [2048, 2048]}"
        )
    )
    plan = _plan_pipeline(load_pipeline("tiles.yaml"), resume=False, overwrite=False, device="cpu")
    assert plan.layout.shards is not None
    owner = state.new_owner()
    store = open_job(plan, owner)
    block = (0,) * len(plan.layout.grid_shape)
    slices = plan.layout.block_slices(block)
    values = np.ones(tuple(s.stop - s.start for s in slices), dtype=np.float32)
    write_block(store.path, plan.layout, slices, values, session=owner.id)
    writer = store.marker_writer(lambda: None)
    writer.mark(0)
    writer.flush()
    state.finish_job(store, "interrupted", blocks_done=1, owner=owner)

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "featuremap.cli.main", "verify", "out.zarr", "--json"],
        capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120,
        preexec_fn=_limit_memory,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["clean"], report
    assert report["blocks_done"] == 1
    assert report["chunks_read"] == 1
    assert time.monotonic() - started < 60
