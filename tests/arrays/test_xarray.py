"""``featuremap.apply`` on xarray DataArrays: lazy, axes by name, coordinates and CRS composed."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from support.cli import run_cli
from support.torch_reference import torch_stack

import featuremap
from featuremap.engine.layers import ConvLayer, PoolLayer
from featuremap.errors import InputError


def _layers(rng, channels):
    return [
        ConvLayer.create(
            rng.standard_normal((4, channels, 3, 3)).astype(np.float32), padding="same", stride=2
        ),
        PoolLayer.create("max", 2),
    ]


@pytest.mark.parametrize("backing", ["numpy", "dask"])
def test_apply_is_lazy_and_matches_torch(scene, backing):
    rng = np.random.default_rng(1)
    layers = _layers(rng, 3)
    data = scene if backing == "numpy" else scene.chunk({"time": 1, "lat": 10, "lon": 7})
    result = featuremap.apply(data, layers)
    import dask.array as da

    assert isinstance(result.data, da.Array)  # nothing computed yet
    assert result.dims == ("t", "c", "y", "x")
    assert result.name == "features"
    for t in range(2):
        image = np.moveaxis(scene.values[t], -1, 0)
        np.testing.assert_allclose(
            result[t].values, torch_stack(layers, image), rtol=1e-5, atol=1e-5
        )


def test_apply_composes_coordinates_and_keeps_batch_ones(scene):
    rng = np.random.default_rng(2)
    result = featuremap.apply(scene, _layers(rng, 3))
    offset, jump = result.attrs["offset"], result.attrs["jump"]
    assert jump == [4, 4]
    np.testing.assert_allclose(
        result["y"].values, 60.0 - 0.5 * (offset[0] + 4 * np.arange(result.sizes["y"]))
    )
    np.testing.assert_allclose(
        result["x"].values, 5.0 + 0.5 * (offset[1] + 4 * np.arange(result.sizes["x"]))
    )
    np.testing.assert_array_equal(result["t"].values, scene["time"].values)
    assert result.attrs["physical"]["jump"] == [-2.0, 2.0]


def test_apply_carries_the_crs(scene):
    pytest.importorskip("rioxarray")
    geo = scene.rename({"lat": "y", "lon": "x"}).rio.write_crs("EPSG:4326")
    result = featuremap.apply(geo, _layers(np.random.default_rng(3), 3))
    assert result.rio.crs.to_epsg() == 4326
    transform = result.rio.transform()
    assert transform.a == pytest.approx(2.0)
    assert transform.e == pytest.approx(-2.0)


def test_apply_takes_a_pipeline_and_labels_features(tmp_path):
    image = xr.DataArray(
        np.random.default_rng(4).random((40, 40), dtype=np.float32), dims=("y", "x")
    )
    pipeline = {
        "name": "g",
        "layers": [
            {
                "conv": {
                    "bank": {"type": "gabor", "size": 7, "orientations": 2, "frequencies": [0.2]}
                }
            }
        ],
    }
    result = featuremap.apply(image, pipeline)
    assert result.sizes["c"] == 4
    assert result["c"].values[0].startswith("gabor θ=0°")
    assert result["y"].attrs["units"] == "pixel"


def test_apply_refuses_unknown_dims():
    with pytest.raises(InputError, match="'species'"):
        featuremap.apply(xr.DataArray(np.zeros((2, 8, 8)), dims=("species", "y", "x")), [])


# --- one vocabulary: a job's store and apply give the same array --------------------------------


def _weather(rng):
    """(time, lat, lon) as a NetCDF-style dataset would hold it: CF units, rioxarray's CRS."""
    pytest.importorskip("rioxarray")
    times = np.array(["2024-01-01", "2024-01-02", "2024-01-03"], dtype="datetime64[ns]")
    data = xr.DataArray(
        rng.random((3, 26, 22), dtype=np.float32),
        dims=("time", "lat", "lon"),
        coords={"time": times, "lat": 60.0 - 0.5 * np.arange(26), "lon": 5.0 + 0.5 * np.arange(22)},
        name="t2m",
    )
    data["lat"].attrs.update(units="degrees_north", standard_name="latitude")
    data["lon"].attrs.update(units="degrees_east", standard_name="longitude")
    return data.rio.write_crs("EPSG:4326")


def test_a_store_and_apply_agree_on_names_coordinates_and_geometry(tmp_path, client):
    """The same pipeline on the same (time, lat, lon) input, once as a job into a store and
    once through ``apply``: the same dims, coordinates (values and attributes), geometry
    attributes, CRS and values -- whether the store is read by featuremap or by xarray."""
    from featuremap.jobs.run import run

    data = _weather(np.random.default_rng(7))
    data.to_dataset().to_zarr(tmp_path / "in.zarr", mode="w", consolidated=False)
    pipeline = featuremap.load_pipeline(
        {
            "input": {"store": str(tmp_path / "in.zarr"), "array": "t2m"},
            "output": {"store": str(tmp_path / "out.zarr"), "chunks": [5, 4]},
            "layers": [
                {"conv": {"bank": {"type": "gaussian", "sigmas": [1.0]}, "padding": "same"}},
                {"pool": {"type": "max", "kernel_size": 2}},
            ],
        }
    )
    run(pipeline, client=client)
    applied = featuremap.apply(data, pipeline)
    from_featuremap = featuremap.open(tmp_path / "out.zarr").to_xarray()
    from_xarray = xr.open_zarr(tmp_path / "out.zarr")["features"]

    for stored in (from_featuremap, from_xarray):
        assert applied.name == stored.name == "features"
        assert applied.dims == stored.dims == ("t", "c", "y", "x")
        assert sorted(applied.coords) == sorted(stored.coords)
        for name in applied.coords:
            assert applied[name].attrs == stored[name].attrs, name
            if applied[name].dtype.kind == "M":
                np.testing.assert_array_equal(applied[name].values, stored[name].values)
            elif applied[name].dtype.kind in "fi":
                np.testing.assert_allclose(applied[name].values, stored[name].values)
            else:
                assert [str(v) for v in applied[name].values.ravel()] == [
                    str(v) for v in stored[name].values.ravel()
                ]
        assert applied.rio.crs == stored.rio.crs
        np.testing.assert_allclose(applied.values, stored.values, rtol=1e-6, atol=1e-6)
    geometry = {key: value for key, value in from_featuremap.attrs.items() if key != "featuremap"}
    assert applied.attrs == geometry
    assert applied.attrs["jump"] == [2, 2]
    assert from_xarray.attrs["featuremap"] == {
        key: value for key, value in applied.attrs.items() if key != "grid_mapping"
    }


def test_apply_with_3d_layers_filters_along_z_and_places_it():
    """A (t, z, y, x) DataArray in micrometres through a 3-D conv and pool: z is filtered, not
    carried; its coordinate is composed like y and x; t stays a batch axis."""
    from featuremap.engine.stack import apply_stack

    rng = np.random.default_rng(6)
    data = rng.random((2, 9, 16, 12), dtype=np.float32)
    volume = xr.DataArray(
        data,
        dims=("t", "z", "y", "x"),
        coords={
            "t": [10, 20],
            "z": xr.Variable("z", 0.5 + 2.0 * np.arange(9), {"units": "micrometer"}),
            "y": xr.Variable("y", 0.25 * np.arange(16), {"units": "micrometer"}),
            "x": xr.Variable("x", 0.25 * np.arange(12), {"units": "micrometer"}),
        },
    )
    layers = [
        ConvLayer.create(rng.standard_normal((2, 1, 3, 3, 3)), padding=(0, 1, 1)),
        PoolLayer.create("avg", [1, 2, 2]),
    ]
    features = featuremap.apply(volume, layers)
    assert features.dims == ("t", "c", "z", "y", "x")
    assert features.shape == (2, 2, 7, 8, 6)
    np.testing.assert_allclose(features["z"].values, 0.5 + 2.0 * (1 + np.arange(7)))
    np.testing.assert_allclose(features["y"].values, 0.25 * (0.5 + 2 * np.arange(8)))
    assert features["z"].attrs["units"] == "micrometer"
    assert features.attrs["jump"] == [1, 2, 2]
    expected = apply_stack(layers, data[:, None])
    np.testing.assert_allclose(features.values, expected, rtol=1e-5, atol=1e-5)


# --- apply reads a pipeline as run does ----------------------------------------------------------


def _scene_store(path):
    """A (time, band, y, x) UTM scene as rioxarray writes it by default: coordinates without
    ``units``, the CRS only in the ``spatial_ref`` variable the data names by ``grid_mapping``."""
    pytest.importorskip("rioxarray")
    rng = np.random.default_rng(8)
    data = xr.DataArray(
        rng.random((2, 3, 30, 26), dtype=np.float32),
        dims=("time", "band", "y", "x"),
        coords={
            "time": np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[ns]"),
            "band": ["red", "green", "nir"],
            "y": 4_999_975.0 - 5.0 * np.arange(30),
            "x": 500_002.5 + 5.0 * np.arange(26),
        },
        name="reflectance",
    ).rio.write_crs("EPSG:32633")
    data.to_dataset().to_zarr(path, mode="w", consolidated=False)
    return data


def test_apply_and_run_give_the_same_features(tmp_path, client):
    """One pipeline with channels, a region and float16 output, on one store: ``run`` and
    ``apply`` on ``xarray.open_zarr(store)`` give the same values, names, dtype, coordinates
    (in the CRS's metres) and CRS."""
    from featuremap.jobs.run import run

    _scene_store(tmp_path / "in.zarr")
    pipeline = featuremap.load_pipeline(
        {
            "input": {
                "store": str(tmp_path / "in.zarr"),
                "channels": ["nir", "red"],
                "region": {"y": [2, 28]},
            },
            "output": {"store": str(tmp_path / "out.zarr"), "dtype": "float16"},
            "layers": [{"conv": {"bank": {"type": "box", "size": 3}, "stride": 2}}],
        }
    )
    run(pipeline, client=client)
    stored = xr.open_zarr(tmp_path / "out.zarr")["features"]
    applied = featuremap.apply(xr.open_zarr(tmp_path / "in.zarr"), pipeline)

    assert applied.dtype == stored.dtype == np.float16
    assert applied.dims == stored.dims
    assert applied.dims[-2:] == ("y", "x")
    assert applied.shape == stored.shape == (2, 2, 12, 12)  # channels nir, red: 2 features
    feature = applied.dims[1]
    assert list(applied[feature].values) == list(stored[feature].values)
    for name in ("y", "x"):
        np.testing.assert_array_equal(applied[name].values, stored[name].values)
        assert applied[name].attrs == stored[name].attrs
        assert stored[name].attrs["units"] == "metre"
    assert float(stored["y"][0]) == 4_999_975.0 - 5.0 * (2 + 1)  # region row 2, 3x3 centre
    assert applied.rio.crs == stored.rio.crs
    assert stored.rio.crs.to_epsg() == 32633
    np.testing.assert_array_equal(applied.values, stored.values)
    import zarr

    ngff = zarr.open_group(tmp_path / "out.zarr", mode="r").attrs["ome"]["multiscales"][0]
    assert [axis.get("unit") for axis in ngff["axes"][-2:]] == ["meter", "meter"]
    inspected = run_cli("inspect", tmp_path / "out.zarr")
    assert "in metre: receptive field 15, jump -10×10, first output centre 4999960×500007.5" in (
        inspected.stdout
    )


def test_apply_warns_once_when_the_named_crs_is_not_carried(tmp_path):
    import warnings

    from featuremap.errors import CRSWarning

    _scene_store(tmp_path / "in.zarr")
    variable = xr.open_zarr(tmp_path / "in.zarr")["reflectance"]  # spatial_ref left behind
    layers = [PoolLayer.create("max", 2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = featuremap.apply(variable, layers, axes={"band": "batch"})
    lost = [w for w in caught if issubclass(w.category, CRSWarning)]
    assert len(lost) == 1
    assert "'spatial_ref'" in str(lost[0].message)
    assert "featuremap.apply(ds, ...)" in str(lost[0].message)
    assert "spatial_ref" not in result.coords
    assert result["y"].attrs["units"] == "pixel"  # no CRS, so no unit to take from it
