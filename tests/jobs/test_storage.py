"""How the features are stored (``output.dtype``, ``codec``, ``level``, ``shards``), on real
stores (when a store is sharded: ``io/test_sizing.py``; how a job streams its blocks:
``jobs/test_execute.py``).

Sharded stores go through the same faults as plain ones: a block's inner chunk corrupted inside
its shard, a lost done bit, ``verify --repair`` and ``--resume`` -- bit for bit equal to an
uninterrupted run; xarray and ome-zarr-models read them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
import zarr
import zarr.codecs
from support.stores import unmark

from featuremap.engine.stack import apply_stack
from featuremap.io import OutputStore
from featuremap.jobs.run import run
from featuremap.jobs.verify import verify_store

CONV = {"conv": {"bank": {"type": "gabor", "orientations": 4}, "padding": "same"}}


def _pipeline(**output) -> dict:
    return {"layers": [CONV], "output": {"chunks": [16, 16], **output}}


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("storage")
    data = np.random.default_rng(31).random((1, 70, 90), dtype=np.float32)
    zarr.create_array(str(folder / "in.zarr"), data=data, chunks=(1, 32, 32))
    return str(folder / "in.zarr"), data


def _run(pipeline: dict, image, store, client, **options):
    return run(pipeline, input=image[0], output=str(store), client=client, **options)


def _features(store) -> np.ndarray:
    return np.asarray(zarr.open_group(str(store), mode="r")["features"][...])


def _oracle(pipeline: dict, data: np.ndarray) -> np.ndarray:
    from featuremap.pipeline.pipeline import load_pipeline

    return apply_stack(load_pipeline(pipeline).build_layers(data.shape[0]), data)


# -- dtype and codec --------------------------------------------------------------------------------


def test_float16_error_is_bounded_by_its_rounding(image, tmp_path, client):
    _run(_pipeline(), image, tmp_path / "f32.zarr", client)
    _run(_pipeline(dtype="float16"), image, tmp_path / "f16.zarr", client)
    full, half = _features(tmp_path / "f32.zarr"), _features(tmp_path / "f16.zarr")
    assert half.dtype == np.float16
    # round to nearest float16: relative error <= 2**-11 for normal values, absolute <= 2**-25
    # below float16's smallest normal (6.1e-5)
    error = np.abs(half.astype(np.float64) - full.astype(np.float64))
    bound = np.maximum(np.abs(full.astype(np.float64)) * 2.0**-11, 2.0**-25)
    assert (error <= bound).all(), float((error / bound).max())
    assert error.max() > 0  # really rounded: the test could fail
    attrs = OutputStore.open(str(tmp_path / "f16.zarr")).root["output"]
    assert attrs["dtype"] == "float16"
    assert attrs["codec_choice"]["asked"] == "auto"  # the default: chosen from a sample


@pytest.mark.parametrize(("codec", "level"), [("lz4", None), ("zstd", 7), ("none", None)])
def test_codec_is_used_recorded_and_lossless(image, tmp_path, client, codec, level):
    output = {"codec": codec, **({"level": level} if level is not None else {})}
    store = tmp_path / f"{codec}.zarr"
    _run(_pipeline(**output), image, store, client)
    features = zarr.open_group(str(store), mode="r")["features"]
    codecs = list(features.metadata.codecs)  # small blocks: one chunk each, not sharded
    assert not any(isinstance(c, zarr.codecs.ShardingCodec) for c in codecs)
    assert isinstance(codecs[-1], zarr.codecs.Crc32cCodec)  # always, last
    blosc = [c for c in codecs if isinstance(c, zarr.codecs.BloscCodec)]
    if codec == "none":
        assert blosc == []
    else:
        assert blosc[0].cname.value == codec
        assert blosc[0].clevel == (level if level is not None else blosc[0].clevel)
    recorded = OutputStore.open(str(store)).root["output"]
    assert recorded["codec"] == codec
    if level is not None:
        assert recorded["codec_level"] == level
    np.testing.assert_allclose(
        _features(store), _oracle(_pipeline(), image[1]), rtol=2e-5, atol=2e-5
    )


# -- shards ------------------------------------------------------------------------------------------


SHARDED = _pipeline(shards=[32, 48])  # 2 x 3 chunks of 16 x 16 per shard: one task per shard


def test_sharded_store_is_read_by_xarray_and_ome(image, tmp_path, client):
    from ome_zarr_models.v05.image import Image

    store = tmp_path / "sharded.zarr"
    summary = _run(SHARDED, image, store, client)
    features = zarr.open_group(str(store), mode="r")["features"]
    count = features.shape[0]
    assert features.shards == (count, 32, 48)
    assert features.chunks == (count, 16, 16)  # 256-pixel chunks: every feature in each
    assert summary.blocks_total == 3 * 2  # 70 x 90 in 32 x 48 shards
    expected = _oracle(SHARDED, image[1])
    np.testing.assert_allclose(_features(store), expected, rtol=2e-5, atol=2e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opened = xr.open_zarr(str(store))["features"]
    np.testing.assert_array_equal(opened.values, _features(store))
    Image.from_zarr(zarr.open_group(str(store), mode="r"))
    assert verify_store(str(store)).clean


def test_sharded_store_faults_repair_and_resume_bit_exact(image, tmp_path, process_client):
    # worker processes, as in production: threads of one process share BLAS's thread pool,
    # and a different split of a sum is a different last bit
    client = process_client
    reference = tmp_path / "reference.zarr"
    _run(SHARDED, image, reference, client)
    store = tmp_path / "damaged.zarr"
    _run(SHARDED, image, store, client)
    shard = store / "features" / "c" / "0" / "1" / "1"  # block (1, 1): one shard file
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 3] ^= 0x01  # inside one of its inner chunks
    shard.write_bytes(bytes(raw))
    unmark(store, [(2, 0)])  # and a lost done bit: on disk, not damage

    report = verify_store(str(store))
    assert report.corrupted == ((1, 1),)
    assert report.unmarked == ((2, 0),)
    assert verify_store(str(store), repair=True).repaired
    assert not shard.exists()
    summary = _run(SHARDED, image, store, client, resume=True)
    assert (summary.blocks_computed, summary.blocks_skipped) == (2, 4)  # the damaged, the unmarked
    np.testing.assert_array_equal(_features(store), _features(reference))
    assert verify_store(str(store)).clean
