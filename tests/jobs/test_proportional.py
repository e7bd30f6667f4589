"""Proportional costs (README "Safety", issue 23 part B): what a store costs on disk and what
``verify`` and ``status`` cost follow the data, never a grid or a shard size picked for bytes
alone.

* ``shards: auto`` never makes a shard larger than the array (D11);
* ``verify`` streams a store's chunks in bounded memory (D12);
* ``status`` costs what the markers that exist cost, and store records are checked against the
  arrays they describe (D8, D17): in ``tests/cli/test_records.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from featuremap.io.create import create_output
from featuremap.io.layout import FEATURES
from featuremap.io.sink import write_block
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
    data = np.random.default_rng(5).random((5000, 8, 8), dtype=np.float32)
    zarr.create_array("tiles.zarr", data=data, chunks=(1, 8, 8), dimension_names=["t", "y", "x"])
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
