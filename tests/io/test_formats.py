"""``output.format`` and ``output.checksum`` (:mod:`featuremap.io.formats`), checked with the
tools that read the stores: GDAL (through rasterio) opens an ``ngff-0.4`` store's features with
the input's CRS and geotransform; xarray, ``featuremap.open``, ome-zarr-py's Reader and
ome-zarr-models (0.4) read it; a ``checksum: none`` store has no crc32c codec anywhere; and a
Zarr v2 store is resumed, verified and repaired like a v3 one.

The GDAL in rasterio's wheel here is 3.10, which reads Zarr v2 only: that the ``ngff-0.5`` store
with ``checksum: none`` opens in GDAL 3.11-3.12 (no crc32c codec there) is checked through its
metadata, not through GDAL.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import featuremap
from featuremap.errors import InputError
from featuremap.io import FEATURES
from featuremap.io.formats import StoreFormat
from featuremap.io.ome import ngff_attributes
from featuremap.io.sizing import OutputOptions
from featuremap.jobs.run import run, run_layers
from featuremap.jobs.state import read_status
from featuremap.jobs.verify import verify_store
from featuremap.pipeline import load_pipeline

#: The stores of the module fixture: ``output:`` options of each.
FORMATS = {
    "ngff-0.4": {"format": "ngff-0.4"},
    # a chunk per feature, the block one shard: the shard index must go without crc32c too
    "ngff-0.5-none": {"checksum": "none", "chunks": [1, 24, 22]},
    "ngff-0.5": {},
}
#: Input pixel size (metres) and the top-left corner of the input (UTM zone 33N).
PIXEL, LEFT, TOP = 10.0, 500_000.0, 4_000_000.0
LAYERS = [
    {"conv": {"bank": {"type": "gabor", "size": 7, "orientations": 2, "frequencies": [0.25]}}},
    {"pool": {"type": "avg", "kernel_size": 4}},
]


# -- the encoding and its parsing ---------------------------------------------------------------


def test_each_format_has_its_default_checksum():
    assert StoreFormat.of() == StoreFormat("ngff-0.5", "crc32c")
    assert StoreFormat.of("ngff-0.4") == StoreFormat("ngff-0.4", "none")
    assert StoreFormat.of("ngff-0.5", "none").zarr_format == 3
    v2 = StoreFormat.of("ngff-0.4")
    assert (v2.zarr_format, v2.ngff_version) == (2, "0.4")
    assert StoreFormat.from_dict(v2.to_dict()) == v2
    assert StoreFormat.from_dict({}) == StoreFormat()  # a store recorded before the choice


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (
            {"format": "ngff-0.3"},
            "output.format: must be one of ngff-0.5, ngff-0.4, got 'ngff-0.3'",
        ),
        ({"checksum": "md5"}, "output.checksum: must be one of crc32c, none, got 'md5'"),
        (
            {"format": "ngff-0.4", "checksum": "crc32c"},
            "output.checksum: crc32c needs format ngff-0.5",
        ),
        ({"format": "ngff-0.4", "shards": [512, 512]}, "output.shards: format ngff-0.4 (Zarr v2)"),
        (
            {"format": "ngff-0.4", "chunks": [1, 256, 256]},
            "output.chunks: chunks that name the feature axis need sharding",
        ),
    ],
)
def test_bad_format_and_checksum_refused_at_load(output, message):
    with pytest.raises(InputError) as raised:
        load_pipeline({"output": output, "layers": LAYERS})
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_pipeline_records_the_resolved_format():
    pipeline = load_pipeline({"output": {"format": "ngff-0.4"}, "layers": LAYERS})
    output = pipeline.to_dict()["output"]
    assert (output["format"], output["checksum"]) == ("ngff-0.4", "none")
    assert load_pipeline({**pipeline.to_dict(), "layers": LAYERS}).output == pipeline.output
    assert pipeline.output.options().store_format == StoreFormat("ngff-0.4", "none")
    # automatic shards mean none in Zarr v2, where a job is never sharded
    assert pipeline.output.shards == "auto"


def test_automatic_shards_mean_none_in_zarr_v2():
    from featuremap.io.sizing import shard_factor

    large = {"chunk": (256, 256), "features": 16, "grid": (100, 100)}  # 10^4 chunks: sharded in v3
    assert shard_factor(OutputOptions(), **large) is not None
    assert shard_factor(OutputOptions(format="ngff-0.4"), **large) is None


def test_ngff04_attributes_keep_multiscales_and_omero_at_the_top():
    ome = {"version": "0.5", "multiscales": [{"name": "features", "axes": []}], "omero": {"x": 1}}
    assert ngff_attributes(ome, "0.5") == {"ome": ome}
    assert ngff_attributes(ome, "0.4") == {
        "multiscales": [{"version": "0.4", "name": "features", "axes": []}],
        "omero": {"x": 1},
    }


# -- stores written in each format --------------------------------------------------------------


def _geo_input(path: Path) -> tuple[str, object]:
    """A (y, x) image in metres with rioxarray's CRS (EPSG:32633); its path and transform."""
    pytest.importorskip("rioxarray")
    values = np.random.default_rng(8).random((48, 44), dtype=np.float32)
    image = xr.DataArray(
        values,
        dims=("y", "x"),
        coords={
            "y": TOP - PIXEL * (np.arange(48) + 0.5),
            "x": LEFT + PIXEL * (np.arange(44) + 0.5),
        },
        name="reflectance",
    )
    image = image.rio.write_crs("EPSG:32633").rio.write_transform()
    image.to_dataset().to_zarr(str(path), mode="w", zarr_format=3, consolidated=False)
    return str(path), image.rio.transform()


@pytest.fixture(scope="module")
def stores(tmp_path_factory, client):
    """The same pipeline run into each of :data:`FORMATS`: ``(input, transform, {name: store})``."""
    tmp = tmp_path_factory.mktemp("formats")
    source, transform = _geo_input(tmp / "scene.zarr")
    written = {}
    for name, output in FORMATS.items():
        store = str(tmp / f"{name}.zarr")
        pipeline = {"input": {"store": source}, "output": {"store": store, **output}}
        run({**pipeline, "layers": LAYERS}, client=client)
        written[name] = store
    return source, transform, written


def _documents(store: str, name: str) -> list[Path]:
    return sorted(Path(store).rglob(name))


def test_ngff04_is_a_zarr_v2_store_as_ngff_04_lays_it_out(stores):
    store = stores[2]["ngff-0.4"]
    assert not _documents(store, "zarr.json")
    features = json.loads((Path(store) / FEATURES / ".zarray").read_text())
    assert features["zarr_format"] == 2
    assert features["dimension_separator"] == "/"  # NGFF 0.4 requires it
    recorded = json.loads((Path(store) / ".zattrs").read_text())["featuremap"]["output"]
    codec = recorded["codec_choice"]["arrays"][FEATURES]["codec"]  # output.codec: auto
    assert codec == recorded["codec"]
    if codec == "none":
        assert features["compressor"] is None  # Zarr v2's form of "uncompressed"
    else:
        assert features["compressor"]["id"] == "blosc"
        assert features["compressor"]["cname"] == codec
    assert "shards" not in features
    attrs = json.loads((Path(store) / FEATURES / ".zattrs").read_text())
    assert attrs["_ARRAY_DIMENSIONS"] == ["c", "y", "x"]
    root = json.loads((Path(store) / ".zattrs").read_text())
    assert "ome" not in root
    assert root["multiscales"][0]["version"] == "0.4"
    assert [c["label"] for c in root["omero"]["channels"]] == list(xr.open_zarr(store)["c"].values)
    assert root["featuremap"]["output"]["format"] == "ngff-0.4"
    assert root["featuremap"]["output"]["checksum"] == "none"
    assert (Path(store) / ".zmetadata").is_file()


def test_no_crc32c_codec_in_any_array_without_checksum(stores):
    for name in ("ngff-0.4", "ngff-0.5-none"):
        store = stores[2][name]
        documents = _documents(store, ".zarray") + [
            path
            for path in _documents(store, "zarr.json")
            if json.loads(path.read_text())["node_type"] == "array"
        ]
        assert len(documents) >= 5  # features, y, x, c, spatial_ref, the weights, markers
        for document in documents:
            assert "crc32c" not in document.read_text(), document
    default = json.loads((Path(stores[2]["ngff-0.5"]) / FEATURES / "zarr.json").read_text())
    assert "crc32c" in json.dumps(default["codecs"])


def test_every_format_reads_back_equal_in_xarray_and_featuremap(stores):
    _, _, written = stores
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consolidated, every array named: no warning
        datasets = {name: xr.open_zarr(store) for name, store in written.items()}
    reference = datasets["ngff-0.5"]
    labels = [str(label) for label in reference["c"].values]
    assert all(label.startswith("gabor") for label in labels)
    for name, dataset in datasets.items():
        xr.testing.assert_identical(
            dataset[FEATURES].drop_vars("c"), reference[FEATURES].drop_vars("c")
        )
        assert [str(label) for label in dataset["c"].values] == labels, name
        assert dataset.attrs["featuremap"]["status"] == "complete"  # v2: the consolidated copy too
        opened = featuremap.open(written[name])
        np.testing.assert_array_equal(opened.data.compute(), reference[FEATURES].values)
        assert [str(v) for v in opened.to_xarray()["c"].values] == labels
        assert read_status(written[name])["status"] == "complete"
        assert verify_store(written[name]).clean


def test_gdal_opens_ngff04_features_with_the_inputs_crs_and_geotransform(stores):
    rasterio = pytest.importorskip("rasterio")
    from affine import Affine

    _, transform, written = stores
    store = written["ngff-0.4"]
    geometry = featuremap.open(store).geometry
    (offset_y, offset_x), (jump_y, jump_x) = geometry.offset, geometry.jump
    # output pixel i is centred on input pixel offset + i * jump: its edge lies half a jump before
    expected = (
        transform
        @ Affine.translation(offset_x + 0.5 - jump_x / 2, offset_y + 0.5 - jump_y / 2)
        @ Affine.scale(jump_x, jump_y)
    )
    features = xr.open_zarr(store)[FEATURES]
    with rasterio.open(f'ZARR:"{store}":/{FEATURES}') as dataset:
        assert dataset.crs.to_epsg() == 32633
        assert dataset.transform.almost_equals(expected)
        assert expected.c != LEFT  # the offset moved it: a real check of the composition
        assert dataset.count == features.sizes["c"]
        np.testing.assert_array_equal(dataset.read(), features.values)
        labels = [dataset.tags(band)["DIM_c_VALUE"] for band in dataset.indexes]
    assert labels == [str(label) for label in features["c"].values]


def test_ngff04_validates_and_reads_in_the_ome_zarr_reader(stores):
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models.v04.image import Image

    store = stores[2]["ngff-0.4"]
    image = Image.from_zarr(zarr.open_group(store, mode="r"))
    multiscale = image.attributes.multiscales[0]
    assert [axis.type for axis in multiscale.axes] == ["channel", "space", "space"]
    node = next(iter(Reader(parse_url(store))()))
    assert node.data[0].shape == xr.open_zarr(store)[FEATURES].shape
    assert node.metadata["channel_names"] == [
        str(label) for label in xr.open_zarr(store)["c"].values
    ]


@pytest.mark.parametrize("name", ["ngff-0.4", "ngff-0.5-none"])
def test_damaged_block_found_repaired_and_resumed(stores, name, tmp_path, client):
    _, _, written = stores
    store = tmp_path / "copy.zarr"
    shutil.copytree(written[name], store)
    before = xr.open_zarr(str(store))[FEATURES].values
    chunk = max(path for path in (store / FEATURES).rglob("0") if path.is_file())
    chunk.write_bytes(chunk.read_bytes()[:20])  # truncated: the compressor's error, no checksum
    report = verify_store(str(store))
    assert len(report.corrupted) == 1
    assert verify_store(str(store), repair=True).repaired
    assert read_status(str(store))["status"] == "interrupted"
    pipeline = load_pipeline(featuremap.open(str(store)).attrs["pipeline"])  # the one it ran
    summary = run(pipeline, output=str(store), resume=True, client=client)
    assert (summary.blocks_computed, summary.blocks_skipped) == (1, summary.blocks_total - 1)
    assert (
        featuremap.open(str(store)).attrs["output"]
        == featuremap.open(written[name]).attrs["output"]
    )
    np.testing.assert_array_equal(xr.open_zarr(str(store))[FEATURES].values, before)
    assert verify_store(str(store)).clean


def test_run_layers_resumes_in_the_stores_own_format(tmp_path, client):
    from support.stores import random_input

    from featuremap.engine.layers import ConvLayer

    source, _ = random_input(tmp_path / "in.zarr", (32, 32), (16, 16), seed=2)
    layers = [ConvLayer.create(np.ones((1, 1, 3, 3)), padding="same")]
    store = str(tmp_path / "out.zarr")
    options = OutputOptions(format="ngff-0.4", chunks=(8, 8))
    run_layers(layers, input=source, output=store, options=options, client=client)
    # resumed with the default options: the store stays what it is, Zarr v2
    summary = run_layers(layers, input=source, output=store, resume=True, client=client)
    assert summary.blocks_skipped == summary.blocks_total
    assert (Path(store) / ".zgroup").is_file()
    assert not (Path(store) / "zarr.json").exists()
    assert featuremap.open(store).attrs["output"]["format"] == "ngff-0.4"
    # a coordinate equal to Zarr v2's default fill value is a value, not a missing one
    assert xr.open_zarr(store)["y"].values[0] == 0.0


def test_status_and_inspect_show_a_zarr_v2_store(stores):
    from support.cli import run_cli

    store = stores[2]["ngff-0.4"]
    status = run_cli("status", store)
    assert status.returncode == 0, status.stderr
    assert "complete" in status.stdout
    inspected = run_cli("inspect", store)
    assert inspected.returncode == 0, inspected.stderr
    assert "storage   ngff-0.4 (Zarr v2), checksum none" in inspected.stdout
    report = json.loads(run_cli("inspect", store, "--json").stdout)
    assert report["storage"] == {"format": "ngff-0.4", "checksum": "none", "zarr_format": 2}


def test_overwrite_replaces_a_store_in_the_other_format_whole(tmp_path, client):
    from support.stores import random_input

    from featuremap.engine.layers import PoolLayer

    source, _ = random_input(tmp_path / "in.zarr", (32, 32), (16, 16), seed=3)
    layers = [PoolLayer.create("max", 2)]
    store = str(tmp_path / "out.zarr")
    for format, left_over in (("ngff-0.5", ".zgroup"), ("ngff-0.4", "zarr.json")):
        options = OutputOptions(format=format)
        run_layers(
            layers, input=source, output=store, options=options, overwrite=True, client=client
        )
        assert not _documents(store, left_over)  # nothing of the store it replaced
        assert featuremap.open(store).attrs["output"]["format"] == format
        assert verify_store(store).clean
