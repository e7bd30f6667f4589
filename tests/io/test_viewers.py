"""Outputs the viewers open as they are (issue #21): real jobs on an OME-NGFF ``(t, y, x)`` input
(one frame a minute, 0.5 micrometre pixels), opened with napari (headless ``ViewerModel`` and
the ``napari-ome-zarr`` plugin), bioio (``bioio-ome-zarr``), ome-zarr-py's ``Reader`` and
``ome-zarr-models``.

The display windows are checked against the data read back; they were gathered while writing.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import zarr
from support.stores import write_ome_image

import featuremap
from featuremap.io import FEATURES, FeatureStats, OutputStore, open_features
from featuremap.io._display import ACTIVE_CHANNELS

ome_zarr = pytest.importorskip("ome_zarr")
from ome_zarr.io import parse_url  # noqa: E402
from ome_zarr.reader import Reader  # noqa: E402

#: The input: 3 frames 60 s apart, 0.5 um pixels; values like a 12-bit camera's, far from [0, 1].
SHAPE = (3, 96, 80)
SECONDS, MICROMETRES = 60.0, 0.5


def _ngff_input(path, data):
    return write_ome_image(
        path,
        data,
        "tyx",
        {"t": SECONDS, "y": MICROMETRES, "x": MICROMETRES},
        {"t": "second", "y": "micrometer", "x": "micrometer"},
        scale_factors=(),
    )


def _run(tmp, client, data, dtype="float32", name="out.zarr", **output):
    """A Gaussian-derivative job (12 features: 2 scales x orders up to 2) in 27 blocks."""
    source = _ngff_input(tmp / f"in-{name}", data)
    pipeline = {
        "name": "viewers",
        "input": {"store": source},
        "output": {"store": str(tmp / name), "dtype": dtype, "chunks": [32, 32], **output},
        "layers": [
            {
                "conv": {
                    "bank": {"type": "gaussian", "sigmas": [1.0, 2.0]},
                    "padding": "same",
                    "padding_mode": "reflect",
                }
            }
        ],
    }
    featuremap.run(pipeline, client=client)
    return str(tmp / name)


@pytest.fixture(scope="module")
def output(tmp_path_factory, client):
    rng = np.random.default_rng(21)
    data = (100 + 2000 * rng.random(SHAPE)).astype(np.float32)
    return _run(tmp_path_factory.mktemp("viewers"), client, data)


def _ome(store):
    return zarr.open_group(store, mode="r").attrs["ome"]


def _ranges(store):
    """Each feature's ``(min, max)`` over the finite values read back, ``(t, c, y, x)`` data."""
    values = np.asarray(zarr.open_group(store, mode="r")[FEATURES][...], dtype=np.float64)
    rows = np.moveaxis(values, 1, 0).reshape(values.shape[1], -1)
    return [(row[np.isfinite(row)].min(), row[np.isfinite(row)].max()) for row in rows]


def _check_windows(store):
    channels = _ome(store)["omero"]["channels"]
    ranges = _ranges(store)
    assert len(channels) == len(ranges) == 12
    for channel, (low, high) in zip(channels, ranges, strict=True):
        window = channel["window"]
        assert (window["min"], window["max"]) == (low, high)
        assert low <= window["start"] < window["end"] <= high
    return channels


# --- omero display metadata --------------------------------------------------------------------


def test_omero_windows_are_each_features_range_and_few_channels_are_active(output):
    channels = _check_windows(output)
    assert [c["active"] for c in channels] == [True] * ACTIVE_CHANNELS + [False] * 9
    active = [c["color"] for c in channels if c["active"]]
    assert len(set(active)) == ACTIVE_CHANNELS
    assert "FFFFFF" not in active
    assert [c["label"] for c in channels] == list(open_features(output).feature_labels)
    assert _ome(output)["omero"]["rdefs"]["model"] == "color"
    # the robust window is narrower than the range for smooth noise: contrast, not a grey wash
    first = channels[0]["window"]
    assert first["end"] - first["start"] < first["max"] - first["min"]


def test_float16_windows_skip_overflowed_pixels(tmp_path, client):
    rng = np.random.default_rng(5)
    # up to 1e5: the smoothed values above float16's 65504 are stored as inf
    data = (1e5 * rng.random(SHAPE)).astype(np.float32)
    store = _run(tmp_path, client, data, dtype="float16")
    stored = zarr.open_group(store, mode="r")[FEATURES][...]
    assert stored.dtype == np.float16
    assert np.isinf(stored).any()
    for channel in _check_windows(store):
        assert all(np.isfinite(value) for value in channel["window"].values())


def test_resume_keeps_the_statistics_of_the_blocks_done_before(tmp_path, client):
    from support.stores import unmark

    rng = np.random.default_rng(8)
    data = (100 + 2000 * rng.random(SHAPE)).astype(np.float32)
    store = _run(tmp_path, client, data)
    first = _ome(store)["omero"]["channels"]
    # as a job stopped after all but two blocks leaves the store: no windows yet, two blocks undone
    OutputStore.open(store, "r+").record_display(FeatureStats.empty(len(first)))
    undone = [(0, 0, 0), (0, 1, 2)]  # (t, y, x) blocks: all 3 frames are one block
    for t, y, x in undone:
        (tmp_path / "out.zarr" / FEATURES / "c" / str(t) / "0" / str(y) / str(x)).unlink()
    unmark(store, undone)
    summary = featuremap.run(open_features(store).attrs["pipeline"], client=client, resume=True)
    assert summary.blocks_computed == 2
    resumed = _check_windows(store)  # the range of every block, not only of the two recomputed
    for before, after in zip(first, resumed, strict=True):
        assert after["window"]["min"] == before["window"]["min"]
        assert after["window"]["max"] == before["window"]["max"]
        # the two recomputed blocks count twice in the mean and spread: barely a change
        assert after["window"]["start"] == pytest.approx(before["window"]["start"], rel=0.05)


# --- NGFF axes: names, units, scales -------------------------------------------------------------


def test_ngff_axes_keep_time_unit_and_scale_and_validate(output):
    from ome_zarr_models.v05.image import Image

    image = Image.from_zarr(zarr.open_group(output, mode="r"))
    multiscale = image.ome_attributes.multiscales[0]
    assert [(a.name, a.type, a.unit) for a in multiscale.axes] == [
        ("t", "time", "second"),
        ("c", "channel", None),
        ("y", "space", "micrometer"),
        ("x", "space", "micrometer"),
    ]
    scale, _ = multiscale.datasets[0].coordinateTransformations
    assert scale.scale == [SECONDS, 1.0, MICROMETRES, MICROMETRES]
    # xarray, featuremap.open and NGFF name the axes alike
    assert zarr.open_group(output, mode="r")[FEATURES].metadata.dimension_names == (
        "t",
        "c",
        "y",
        "x",
    )
    assert open_features(output).to_xarray().dims == ("t", "c", "y", "x")


def test_ome_zarr_reader_gets_labels_and_windows(output):
    node = next(iter(Reader(parse_url(output))()))
    labels = list(open_features(output).feature_labels)
    assert node.metadata["channel_names"] == labels
    assert node.metadata["visible"] == [True] * ACTIVE_CHANNELS + [False] * 9
    assert len(node.metadata["contrast_limits"]) == len(labels)


# --- the viewers themselves ------------------------------------------------------------------------


def _napari_layers(store):
    """The layers napari (headless, with napari-ome-zarr) opens ``store`` as."""
    pytest.importorskip("napari")
    pytest.importorskip("napari_ome_zarr")
    import npe2
    from napari.components import ViewerModel

    npe2.PluginManager.instance().discover()  # a headless viewer does not look for plugins itself
    viewer = ViewerModel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        viewer.open(store, plugin="napari-ome-zarr")
    return list(viewer.layers)


def test_napari_opens_few_visible_layers_with_contrast_in_the_data_range(output):
    layers = _napari_layers(output)
    labels = open_features(output).feature_labels
    assert [layer.name.split(": ", 1)[-1] for layer in layers] == list(labels)
    assert 1 <= sum(layer.visible for layer in layers) <= ACTIVE_CHANNELS
    for layer, (low, high) in zip(layers, _ranges(output), strict=True):
        start, end = layer.contrast_limits
        assert low <= start < end <= high
        assert list(layer.scale) == [SECONDS, MICROMETRES, MICROMETRES]  # t keeps its 60 s
    assert len({layer.colormap.name for layer in layers if layer.visible}) == ACTIVE_CHANNELS


def test_napari_opens_a_pyramid_as_one_multiscale_layer_per_feature(tmp_path, client):
    data = (100 + 2000 * np.random.default_rng(22).random(SHAPE)).astype(np.float32)
    store = _run(tmp_path, client, data, pyramid={"levels": 2})
    layers = _napari_layers(store)
    assert len(layers) == len(open_features(store).feature_labels)
    for layer in layers:
        assert layer.multiscale
        shapes = [tuple(level.shape) for level in layer.data]
        # (t, y, x) per feature: 96 x 80, then floor halves
        assert shapes == [(3, 96, 80), (3, 48, 40), (3, 24, 20)]
        assert list(layer.scale) == [SECONDS, MICROMETRES, MICROMETRES]


def test_bioio_reads_dims_channel_names_and_physical_sizes(output):
    pytest.importorskip("bioio")
    bioio_ome_zarr = pytest.importorskip("bioio_ome_zarr")
    from bioio import BioImage

    image = BioImage(output, reader=bioio_ome_zarr.Reader)
    assert image.dims.order == "TCZYX"
    assert (image.dims.T, image.dims.C, image.dims.Z) == (3, 12, 1)
    assert SHAPE[1:] == (image.dims.Y, image.dims.X)
    assert image.channel_names == list(open_features(output).feature_labels)
    sizes = image.physical_pixel_sizes
    assert (sizes.Y, sizes.X) == (MICROMETRES, MICROMETRES)
    assert image.time_interval == SECONDS
    np.testing.assert_array_equal(
        image.get_image_data("TCYX"), zarr.open_group(output, mode="r")[FEATURES][...]
    )


def test_bioio_reads_a_named_batch_axis_as_time(tmp_path, client, input_store):
    """An ML batch named ``image`` (the demo's) is NGFF's one-letter ``t``: bioio reads it."""
    bioio_ome_zarr = pytest.importorskip("bioio_ome_zarr")
    from bioio import BioImage

    rng = np.random.default_rng(2)
    source = input_store(
        rng.random((2, 40, 36), dtype=np.float32), dimension_names=["image", "y", "x"]
    )
    output = str(tmp_path / "batch.zarr")
    featuremap.run(
        {
            "name": "batch",
            "input": {"store": source},
            "output": {"store": output},
            "layers": [{"conv": {"bank": {"type": "gaussian", "sigmas": [1.0]}}}],
        },
        client=client,
    )
    image = BioImage(output, reader=bioio_ome_zarr.Reader)
    assert (image.dims.T, image.dims.C) == (2, 6)
    assert image.channel_names == list(open_features(output).feature_labels)


def test_a_store_from_before_display_statistics_resumes(tmp_path, client):
    import shutil

    from support.stores import unmark

    rng = np.random.default_rng(9)
    store = _run(tmp_path, client, (100 + 2000 * rng.random(SHAPE)).astype(np.float32))
    shutil.rmtree(tmp_path / "out.zarr" / "_job" / "display")
    unmark(store, [(0, 2, 2)])
    featuremap.run(open_features(store).attrs["pipeline"], client=client, resume=True)
    # only the recomputed block's statistics are known: windows inside the data's range
    channels = _ome(store)["omero"]["channels"]
    for channel, (low, high) in zip(channels, _ranges(store), strict=True):
        window = channel["window"]
        assert low <= window["min"] <= window["start"] < window["end"] <= window["max"] <= high
    assert (tmp_path / "out.zarr" / "_job" / "display" / "zarr.json").is_file()
