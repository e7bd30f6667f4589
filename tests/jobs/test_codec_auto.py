"""``output.codec: auto`` on real jobs: the codec each features array is created with follows
the sample of the first blocks (noisy features uncompressed with their checksum, sparse ones
compressed, each pyramid level on its own), in Zarr v3 and v2 alike; the choice is recorded,
shown by ``inspect`` and reused by ``--resume``; explicit codecs are kept; xarray reads it all.
The decision on samples alone: ``io/test_codec_choice.py``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
import zarr.codecs
from support.cli import run_cli
from support.stores import unmark

from featuremap.io import OutputStore
from featuremap.jobs import plan as plan_module
from featuremap.jobs.run import run

CONV = {"conv": {"bank": {"type": "gabor", "orientations": 4}, "padding": "same"}}


def _pipeline(**output) -> dict:
    return {"layers": [CONV], "output": {"chunks": [32, 32], **output}}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """A noise image (features that do not compress) and a sparse one (that do: a few spots
    in the last row of blocks, the rest background, as an image of cells on empty glass),
    96 x 96."""
    folder = tmp_path_factory.mktemp("codec")
    rng = np.random.default_rng(8)
    sparse = np.zeros((1, 96, 96), dtype=np.float32)
    sparse[0, rng.integers(72, 96, 6), rng.integers(0, 96, 6)] = 1.0
    images = {"noise": rng.random((1, 96, 96), dtype=np.float32), "sparse": sparse}
    for name, data in images.items():
        zarr.create_array(str(folder / f"{name}.zarr"), data=data, chunks=(1, 32, 32))
    return {name: str(folder / f"{name}.zarr") for name in images}


def _run(pipeline, source, store, client, **options):
    return run(pipeline, input=source, output=str(store), client=client, **options)


def _choice(store) -> dict:
    return OutputStore.open(str(store)).root["output"]["codec_choice"]


def _compressor(store, path: str = "features") -> str:
    """The Blosc codec an array was created with, or ``"none"``; its checksum checked too."""
    codecs = list(zarr.open_group(str(store), mode="r")[path].metadata.codecs)
    inner = codecs[0].codecs if isinstance(codecs[0], zarr.codecs.ShardingCodec) else codecs
    assert isinstance(inner[-1], zarr.codecs.Crc32cCodec)  # the checksum is always kept
    blosc = [c for c in inner if isinstance(c, zarr.codecs.BloscCodec)]
    return blosc[0].cname.value if blosc else "none"


def _values(store, path: str = "features") -> np.ndarray:
    return np.asarray(zarr.open_group(str(store), mode="r")[path][...])


def test_noisy_features_are_written_uncompressed_and_explicit_lz4_kept(inputs, tmp_path, client):
    auto, lz4 = tmp_path / "auto.zarr", tmp_path / "lz4.zarr"
    _run(_pipeline(), inputs["noise"], auto, client)
    _run(_pipeline(codec="lz4"), inputs["noise"], lz4, client)
    assert _compressor(auto) == "none"
    choice = _choice(auto)
    assert (choice["asked"], choice["reason"]) == ("auto", "sampled")
    assert min(choice["arrays"]["features"]["stored"].values()) > 0.85
    assert OutputStore.open(str(auto)).root["output"]["codec"] == "none"
    assert _compressor(lz4) == "lz4"  # asked for: kept, whatever the sample
    assert _choice(lz4)["reason"] == "asked"
    np.testing.assert_array_equal(_values(auto), _values(lz4))
    np.testing.assert_array_equal(xr.open_zarr(str(auto))["features"].values, _values(lz4))
    inspected = run_cli("inspect", str(auto))
    assert inspected.returncode == 0, inspected.stderr
    assert "codec     none (auto: lz4 would store" in inspected.stdout


def test_sparse_features_and_their_levels_are_compressed(inputs, tmp_path, client):
    store = tmp_path / "sparse.zarr"
    _run(_pipeline(pyramid={"levels": 1}), inputs["sparse"], store, client)
    choice = _choice(store)["arrays"]
    assert set(choice) == {"features", "levels/1/features"}
    for path, chosen in choice.items():
        assert chosen["codec"] in ("lz4", "zstd"), choice
        assert _compressor(store, path) == chosen["codec"]
        assert min(chosen["stored"].values()) < 0.85
    with xr.open_zarr(str(store)) as opened:
        np.testing.assert_array_equal(opened["features"].values, _values(store))


@pytest.mark.parametrize("source", ["noise", "sparse"])
def test_zarr_v2_gets_no_compressor_or_blosc(inputs, tmp_path, client, source):
    store = tmp_path / f"{source}-v2.zarr"
    _run(_pipeline(format="ngff-0.4"), inputs[source], store, client)
    array = json.loads((Path(store) / "features" / ".zarray").read_text())
    codec = _choice(store)["arrays"]["features"]["codec"]
    assert (codec == "none") == (source == "noise")
    if codec == "none":
        assert array["compressor"] is None
    else:
        assert (array["compressor"]["id"], array["compressor"]["cname"]) == ("blosc", codec)
    np.testing.assert_array_equal(xr.open_zarr(str(store))["features"].values, _values(store))


def test_resume_reuses_the_recorded_choice(inputs, tmp_path, client, monkeypatch):
    store = tmp_path / "resumed.zarr"
    _run(_pipeline(), inputs["sparse"], store, client)
    reference, recorded = _values(store), _choice(store)
    unmark(store, [(0, 0), (2, 1)])

    def no_sampling(*args, **kwargs):
        raise AssertionError("--resume sampled again")

    monkeypatch.setattr(plan_module, "sample_windows", no_sampling)
    summary = _run(_pipeline(), inputs["sparse"], store, client, resume=True)
    assert summary.blocks_computed == 2
    assert _choice(store) == recorded
    assert _compressor(store) == recorded["arrays"]["features"]["codec"] != "none"
    np.testing.assert_array_equal(_values(store), reference)


def test_object_store_outputs_keep_compression_without_sampling(monkeypatch):
    from featuremap.engine.geometry import StackGeometry
    from featuremap.io import OutputLayout

    def no_sampling(*args, **kwargs):
        raise AssertionError("an object store's output was sampled")

    monkeypatch.setattr(plan_module, "sample_windows", no_sampling)
    layout = OutputLayout(
        batch_dims=(),
        shape=(4, 64, 64),
        chunks=(4, 64, 64),
        stack=StackGeometry((3, 3), (1, 1), (1.0, 1.0)),
        codec="auto",
    )
    remote = plan_module._choose_codecs("s3://bucket/features.zarr", None, None, layout)
    assert (remote.codec, remote.codec_decision.reason) == ("lz4", "object store")
    asked = plan_module._choose_codecs(
        "s3://bucket/features.zarr", None, None, replace(layout, codec="none")
    )
    assert (asked.codec, asked.codec_decision.reason) == ("none", "asked")
