"""Real datasets in, physical space out: stores written by the real writers.

Inputs are written by ome-zarr-py (NGFF 0.4 and 0.5), by ``xarray.Dataset.to_zarr`` with
rioxarray's CRS, and by Zarr itself with ``dimension_names`` (channel-last). Each is run through
a real job (``run_layers`` on a local cluster); the features are compared with torch slice by
slice, and the outputs are read back with ome-zarr-models, ome-zarr-py's ``Reader`` (what napari
gets) and xarray.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
import zarr
from support.torch_reference import torch_stack

from featuremap.engine.layers import ConvLayer, PoolLayer
from featuremap.errors import InputError
from featuremap.io import FEATURES, InputSelection, open_features, open_input
from featuremap.jobs.run import run_layers

ome_zarr = pytest.importorskip("ome_zarr")
from ome_zarr.format import FormatV04, FormatV05  # noqa: E402
from ome_zarr.io import parse_url  # noqa: E402
from ome_zarr.reader import Reader  # noqa: E402
from ome_zarr.writer import write_image  # noqa: E402


def _layers(rng, channels=1):
    """A strided 'same' conv (bias, abs) then an avg pool: jump 4, offset 2."""
    conv = ConvLayer.create(
        rng.standard_normal((3, channels, 5, 5)).astype(np.float32),
        rng.standard_normal(3).astype(np.float32),
        stride=2,
        padding="same",
        activation="abs",
        bank={"name": "random", "filters": [{"name": "random", "index": i} for i in range(3)]},
    )
    return [conv, PoolLayer.create("avg", 2)]


def _ome_image(path, data, axes, fmt, scale, units, **kwargs):
    store = parse_url(str(path), mode="w", fmt=fmt).store
    root = zarr.open_group(store, mode="w", zarr_format=2 if fmt.version == "0.4" else 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_image(
            data,
            root,
            axes=axes,
            fmt=fmt,
            scale=scale,
            axes_units=units,
            scale_factors=(2,),
            **kwargs,
        )
    return str(path)


def _reader_image(path):
    """What ome-zarr-py's Reader hands napari: the node's metadata."""
    nodes = list(Reader(parse_url(str(path)))())
    return nodes[0].metadata


# --- OME-NGFF 0.5 (z, y, x) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def volume(tmp_path_factory, client):
    rng = np.random.default_rng(1)
    tmp = tmp_path_factory.mktemp("ngff05")
    data = rng.random((4, 64, 48), dtype=np.float32)
    source = _ome_image(
        tmp / "vol.ome.zarr",
        data,
        "zyx",
        FormatV05(),
        {"z": 2.0, "y": 0.25, "x": 0.25},
        {"z": "micrometer", "y": "micrometer", "x": "micrometer"},
    )
    layers = _layers(rng)
    output = str(tmp / "out.zarr")
    run_layers(layers, input=source, output=output, client=client)
    return source, output, layers, data


def test_ngff05_z_is_a_batch_axis_not_channels(volume):
    _, output, layers, data = volume
    features = zarr.open_group(output, mode="r")[FEATURES]
    # (z, y, x) in: z carried as a space batch axis after the features (NGFF order)
    assert features.metadata.dimension_names == ("c", "z", "y", "x")
    assert features.shape == (3, 4, 16, 12)
    for z in range(data.shape[0]):
        expected = torch_stack(layers, data[z : z + 1])
        np.testing.assert_allclose(features[:, z], expected, rtol=1e-5, atol=1e-5)


def test_ngff05_output_is_placed_in_micrometres(volume):
    output = volume[1]
    ds = xr.open_zarr(output)
    geometry = open_features(output).geometry
    assert geometry.jump == (4, 4)
    np.testing.assert_allclose(ds["y"].values, 0.25 * (geometry.offset[0] + 4 * np.arange(16)))
    np.testing.assert_allclose(ds["x"].values, 0.25 * (geometry.offset[1] + 4 * np.arange(12)))
    assert ds["y"].attrs["units"] == "micrometer"
    np.testing.assert_allclose(ds["z"].values, 2.0 * np.arange(4))
    assert list(ds["c"].values) == ["random #0", "random #1", "random #2"]


def test_ngff05_output_validates_and_reads_in_the_ome_zarr_reader(volume):
    from ome_zarr_models.v05.image import Image

    _, output, _, _ = volume
    image = Image.from_zarr(zarr.open_group(output, mode="r"))
    axes = image.ome_attributes.multiscales[0].axes
    assert [(a.name, a.type) for a in axes] == [
        ("c", "channel"),
        ("z", "space"),
        ("y", "space"),
        ("x", "space"),
    ]
    assert [a.unit for a in axes[1:]] == ["micrometer"] * 3
    metadata = _reader_image(output)
    ((scale, translation),) = metadata["coordinateTransformations"]
    geometry = open_features(output).geometry
    assert scale == {"type": "scale", "scale": [1.0, 2.0, 1.0, 1.0]}
    assert translation["translation"] == pytest.approx(
        [0.0, 0.0, 0.25 * geometry.offset[0], 0.25 * geometry.offset[1]]
    )
    assert metadata["channel_names"] == ["random #0", "random #1", "random #2"]  # omero labels


# --- OME-NGFF 0.4 (c, z, y, x), a level, a region and channels --------------------------------


def test_ngff04_czyx_level_region_channels(tmp_path, client):
    rng = np.random.default_rng(2)
    data = rng.random((2, 3, 64, 64), dtype=np.float32)
    source = _ome_image(
        tmp_path / "img.ome.zarr",
        data,
        "czyx",
        FormatV04(),
        {"z": 1.0, "y": 0.5, "x": 0.5},
        {"z": "micrometer", "y": "micrometer", "x": "micrometer"},
    )
    level1 = np.asarray(zarr.open_group(source, mode="r")["s1"][...])
    assert level1.shape == (2, 3, 32, 32)
    layers = _layers(rng, channels=1)
    selection = InputSelection(
        level=1, region={"z": (1, 3), "y": (4, 28), "x": (0, 20)}, channels=(1,)
    )
    output = str(tmp_path / "out.zarr")
    run_layers(layers, input=source, output=output, selection=selection, client=client)
    features = zarr.open_group(output, mode="r")[FEATURES]
    assert features.metadata.dimension_names == ("c", "z", "y", "x")
    for i, z in enumerate((1, 2)):
        expected = torch_stack(layers, level1[1:2, z, 4:28, 0:20])
        np.testing.assert_allclose(features[:, i], expected, rtol=1e-5, atol=1e-5)
    ds = xr.open_zarr(output)
    geometry = open_features(output).geometry
    # level 1: scale 1.0 um and ome-zarr-py's translation for it, then the region's origin (4, 0)
    datasets = zarr.open_group(source, mode="r").attrs["multiscales"][0]["datasets"]
    scale, translation = (t[t["type"]] for t in datasets[1]["coordinateTransformations"])
    assert scale[-2] == pytest.approx(1.0)
    y0 = open_input(source, selection=selection).placement.y.translation
    assert y0 == pytest.approx(translation[-2] + scale[-2] * 4)
    np.testing.assert_allclose(
        ds["y"].values, y0 + 1.0 * (geometry.offset[0] + 4 * np.arange(ds.sizes["y"]))
    )
    np.testing.assert_allclose(ds["z"].values, [1.0, 2.0])


def test_ome_group_without_array_and_with_the_old_array_flag(tmp_path):
    data = np.zeros((3, 16, 16), dtype=np.float32)
    source = _ome_image(tmp_path / "v.zarr", data, "zyx", FormatV05(), None, None)
    assert open_input(source).axes.source == "OME-NGFF"
    assert open_input(source, "s1").level == 1  # --array naming a level's path
    with pytest.raises(InputError, match="no level 7"):
        open_input(source, selection=InputSelection(level=7))


# --- xarray (time, lat, lon) with rioxarray's CRS --------------------------------------------


@pytest.fixture(scope="module")
def geo(tmp_path_factory, client):
    pytest.importorskip("rioxarray")
    import pandas as pd

    rng = np.random.default_rng(3)
    tmp = tmp_path_factory.mktemp("geo")
    times = pd.date_range("2024-01-01", periods=3, freq="D")
    northing = 4_000_000.0 - 10.0 * np.arange(40) - 5.0  # descending, metres (UTM)
    easting = 500_000.0 + 10.0 * np.arange(36) + 5.0
    values = rng.random((3, 40, 36), dtype=np.float32)
    array = xr.DataArray(
        values,
        dims=("time", "y", "x"),
        coords={"time": times, "y": northing, "x": easting},
        name="reflectance",
    )
    array["y"].attrs.update(units="m", standard_name="projection_y_coordinate")
    array["x"].attrs.update(units="m", standard_name="projection_x_coordinate")
    array = array.rio.write_crs("EPSG:32633").rio.write_transform()
    path = str(tmp / "scene.zarr")
    array.to_dataset().to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    layers = _layers(rng)
    output = str(tmp / "out.zarr")
    run_layers(layers, input=path, output=output, client=client)  # the only data variable
    return path, output, layers, values, times


def test_xarray_time_is_kept_not_consumed_as_channels(geo):
    _, output, layers, values, times = geo
    ds = xr.open_zarr(output)
    assert ds[FEATURES].dims == ("t", "c", "y", "x")
    np.testing.assert_array_equal(ds["t"].values, times.values)
    for t in range(3):
        np.testing.assert_allclose(
            ds[FEATURES][t].values, torch_stack(layers, values[t : t + 1]), rtol=1e-5, atol=1e-5
        )


def test_xarray_coordinates_in_metres_and_crs_travel(geo):
    _, output, _, _, _ = geo
    ds = xr.open_zarr(output)
    geometry = open_features(output).geometry
    np.testing.assert_allclose(
        ds["y"].values, 3_999_995.0 - 10.0 * (geometry.offset[0] + 4 * np.arange(ds.sizes["y"]))
    )
    np.testing.assert_allclose(
        ds["x"].values, 500_005.0 + 10.0 * (geometry.offset[1] + 4 * np.arange(ds.sizes["x"]))
    )
    assert ds["y"].attrs["units"] == "m"
    assert ds["y"].attrs["standard_name"] == "projection_y_coordinate"
    features = ds[FEATURES]
    assert features.rio.crs.to_epsg() == 32633
    transform = features.rio.transform()
    assert transform.a == pytest.approx(40.0)
    assert transform.e == pytest.approx(-40.0)
    assert transform.c == pytest.approx(ds["x"].values[0] - 20.0)
    assert transform.f == pytest.approx(ds["y"].values[0] + 20.0)


# --- Zarr v3 dimension_names, channel-last ML batch --------------------------------------------


def test_channel_last_uint8_batch(tmp_path, client):
    rng = np.random.default_rng(4)
    data = rng.integers(0, 255, (3, 40, 24, 3), dtype=np.uint8)
    source = str(tmp_path / "batch.zarr")
    zarr.create_array(
        source, data=data, chunks=(1, 16, 16, 3), dimension_names=["n", "y", "x", "c"]
    )
    layers = _layers(rng, channels=3)
    output = str(tmp_path / "out.zarr")
    run_layers(layers, input=source, output=output, client=client)
    features = zarr.open_group(output, mode="r")[FEATURES]
    assert features.metadata.dimension_names == ("t", "c", "y", "x")
    assert features.shape == (3, 3, 10, 6)
    for n in range(3):
        image = np.moveaxis(data[n], -1, 0).astype(np.float32)
        np.testing.assert_allclose(features[n], torch_stack(layers, image), rtol=1e-5, atol=1e-4)


# --- (t, c, z, y, x) -------------------------------------------------------------------------


def test_tczyx_gets_valid_ome_with_features_in_the_channel_place(tmp_path, client):
    from ome_zarr_models.v05.image import Image

    rng = np.random.default_rng(5)
    data = rng.random((2, 2, 3, 32, 32), dtype=np.float32)
    source = _ome_image(
        tmp_path / "tczyx.zarr",
        data,
        "tczyx",
        FormatV05(),
        {"z": 1.5, "y": 0.5, "x": 0.5},
        {"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"},
    )
    layers = _layers(rng, channels=2)
    output = str(tmp_path / "out.zarr")
    run_layers(layers, input=source, output=output, client=client)
    group = zarr.open_group(output, mode="r")
    assert group[FEATURES].metadata.dimension_names == ("t", "c", "z", "y", "x")
    image = Image.from_zarr(group)
    types = [a.type for a in image.ome_attributes.multiscales[0].axes]
    assert types == ["time", "channel", "space", "space", "space"]
    for t in range(2):
        for z in range(3):
            np.testing.assert_allclose(
                group[FEATURES][t, :, z], torch_stack(layers, data[t, :, z]), rtol=1e-5, atol=1e-5
            )


def test_unknown_dimension_name_is_refused_with_one_line(tmp_path):
    source = str(tmp_path / "odd.zarr")
    zarr.create_array(
        source, data=np.zeros((2, 8, 8), np.float32), dimension_names=["species", "y", "x"]
    )
    with pytest.raises(InputError, match=r"'species'.*input.axes"):
        open_input(source)
    # declared as a batch axis, it works
    source_input = open_input(source, selection=InputSelection(axes={"species": "batch"}))
    assert source_input.batch_dims == ("species",)
