"""``featuremap export``: a store's features as a GeoTIFF / COG that GIS tools open as it is,
read back with rasterio (band names, CRS, transform, values, the provenance tag)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from support.cli import run_cli

import featuremap

rasterio = pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def utm_store(tmp_path_factory, client):
    """A finished store of a (time, y, x) UTM scene whose coordinates name no units."""
    pytest.importorskip("rioxarray")
    from featuremap.jobs.run import run

    folder = tmp_path_factory.mktemp("export")
    scene = xr.DataArray(
        np.random.default_rng(5).random((2, 40, 36), dtype=np.float32),
        dims=("time", "y", "x"),
        coords={
            "time": np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[ns]"),
            "y": 4_999_975.0 - 5.0 * np.arange(40),
            "x": 500_002.5 + 5.0 * np.arange(36),
        },
        name="reflectance",
    ).rio.write_crs("EPSG:32633")
    scene.to_dataset().to_zarr(folder / "in.zarr", mode="w", consolidated=False)
    pipeline = featuremap.load_pipeline(
        {
            "name": "gabor-export",
            "input": {"store": str(folder / "in.zarr")},
            "output": {"store": str(folder / "out.zarr"), "dtype": "float16"},
            "layers": [
                {
                    "conv": {
                        "bank": {
                            "type": "gabor",
                            "size": 7,
                            "orientations": 2,
                            "frequencies": [0.2],
                        },
                        "stride": 2,
                        "padding": "same",
                    }
                }
            ],
        }
    )
    run(pipeline, client=client)
    return folder


@pytest.mark.parametrize("kind", ["geotiff", "cog"])
def test_export_bands_are_named_georeferenced_and_tagged(utm_store, kind):
    out = utm_store / f"t1-{kind}.tif"
    stored = xr.open_zarr(utm_store / "out.zarr")["features"]
    time, feature = stored.dims[:2]  # (time, feature, y, x), whatever the store calls them
    result = run_cli(
        "export", utm_store / "out.zarr", "--to", kind, "-o", out, "--index", f"{time}=1"
    )
    assert result.returncode == 0, result.stderr
    features = stored[1]
    with rasterio.open(out) as raster:
        assert raster.count == features.sizes[feature] == 4
        assert list(raster.descriptions) == [str(v) for v in features[feature].values]
        assert raster.descriptions[0].startswith("gabor θ=0°")
        assert raster.crs.to_epsg() == 32633
        transform = raster.transform
        assert (transform.a, transform.e) == (10.0, -10.0)  # 5 m pixels, stride 2
        assert transform.c == float(features["x"][0]) - 5.0  # edges half a pixel out
        assert transform.f == float(features["y"][0]) + 5.0
        np.testing.assert_array_equal(raster.read(), features.values.astype(np.float32))
        tag = raster.tags()["featuremap"]
        layout = raster.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")
        assert layout == ("COG" if kind == "cog" else None)
    provenance = json.loads(tag)
    assert len(tag) < 2000
    assert provenance["pipeline"] == "gabor-export"
    assert provenance["index"] == {time: 1}
    assert provenance["physical"]["units"] == ["metre", "metre"]


def test_export_refuses_in_one_line_and_writes_nothing(utm_store):
    store = utm_store / "out.zarr"
    time = xr.open_zarr(store)["features"].dims[0]
    several = run_cli("export", store, "-o", utm_store / "a.tif")
    assert several.returncode == 2
    assert several.stderr.count("\n") == 1
    assert f"along '{time}'" in several.stderr
    assert f"--index {time}=0" in several.stderr
    outside = run_cli("export", store, "-o", utm_store / "a.tif", "--index", f"{time}=2")
    assert outside.returncode == 2
    assert "(0..1)" in outside.stderr
    bad = run_cli("export", store, "-o", utm_store / "a.tif", "--index", time)
    assert bad.returncode == 2
    assert "NAME=INDEX" in bad.stderr
    assert not (utm_store / "a.tif").exists()
    (utm_store / "mine.tif").write_bytes(b"not featuremap's")
    taken = run_cli("export", store, "-o", utm_store / "mine.tif", "--index", f"{time}=0")
    assert taken.returncode == 2
    assert "exists" in taken.stderr
    assert (utm_store / "mine.tif").read_bytes() == b"not featuremap's"
    assert sorted(p.name for p in utm_store.iterdir() if p.name.startswith(".")) == []
