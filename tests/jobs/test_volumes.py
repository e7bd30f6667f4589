"""Jobs over volumes: a stack of 3-D layers on an OME-NGFF 0.5 ``(c, z, y, x)`` image written by
ome-zarr-py, run on a local cluster; the store read back by ome-zarr-models, xarray and
``featuremap.open``, and compared with the in-memory stack."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
import zarr
from support.stores import write_input

from featuremap.engine.layers import ConvLayer, PoolLayer
from featuremap.engine.stack import apply_stack
from featuremap.io import FEATURES, open_features
from featuremap.jobs.run import run_layers

ome_zarr = pytest.importorskip("ome_zarr")
from ome_zarr.format import FormatV05  # noqa: E402
from ome_zarr.io import parse_url  # noqa: E402
from ome_zarr.writer import write_image  # noqa: E402

#: EM-like voxels: 40 nm planes, 4 nm pixels, in micrometres.
SCALE = {"c": 1.0, "z": 0.04, "y": 0.004, "x": 0.004}


def _layers(rng):
    """A 3-D 'same' conv (reflect along z, replicate in-plane) then a strided 3-D max pool."""
    conv = ConvLayer.create(
        rng.standard_normal((3, 2, 3, 5, 5)).astype(np.float32),
        rng.standard_normal(3).astype(np.float32),
        padding="same",
        padding_mode={"z": "reflect", "y": "replicate", "x": "replicate"},
        activation="abs",
    )
    return [conv, PoolLayer.create("max", [1, 2, 2])]


@pytest.fixture(scope="module")
def em_volume(tmp_path_factory, client):
    rng = np.random.default_rng(4)
    tmp = tmp_path_factory.mktemp("em")
    data = rng.random((2, 12, 40, 36), dtype=np.float32)
    path = tmp / "em.ome.zarr"
    root = zarr.open_group(parse_url(str(path), mode="w", fmt=FormatV05()).store, mode="w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_image(
            data,
            root,
            axes="czyx",
            fmt=FormatV05(),
            scale=SCALE,
            axes_units=dict.fromkeys("zyx", "micrometer"),
            scale_factors=(2,),
        )
    layers = _layers(rng)
    output = str(tmp / "features.zarr")
    run_layers(layers, input=str(path), output=output, client=client, out_chunks=(5, 8, 8))
    return output, layers, data


def test_a_3d_stack_writes_feature_z_y_x_equal_to_the_in_memory_stack(em_volume):
    output, layers, data = em_volume
    features = zarr.open_group(output, mode="r")[FEATURES]
    assert features.metadata.dimension_names == ("c", "z", "y", "x")
    expected = apply_stack(layers, data)
    assert features.shape == expected.shape == (3, 12, 20, 18)
    np.testing.assert_allclose(features[...], expected, rtol=2e-5, atol=2e-5)


def test_geometry_is_per_z_y_x_and_placed_in_micrometres(em_volume):
    output, _, _ = em_volume
    geometry = open_features(output).geometry
    assert geometry.receptive_field == (3, 6, 6)
    assert geometry.jump == (1, 2, 2)
    assert geometry.offset == (0.0, 0.5, 0.5)
    attrs = zarr.open_group(output, mode="r")[FEATURES].attrs["featuremap"]
    assert attrs["jump"] == [1, 2, 2]
    assert attrs["physical"]["units"] == ["micrometer"] * 3
    ds = xr.open_zarr(output)
    assert ds[FEATURES].dims == ("c", "z", "y", "x")
    np.testing.assert_allclose(ds["z"].values, 0.04 * np.arange(12))
    np.testing.assert_allclose(ds["y"].values, 0.004 * (0.5 + 2 * np.arange(20)))
    assert ds["z"].attrs["units"] == "micrometer"


def test_the_store_validates_as_ngff_with_z_a_space_axis(em_volume):
    from ome_zarr_models.v05.image import Image

    output, _, _ = em_volume
    image = Image.from_zarr(zarr.open_group(output, mode="r"))
    multiscale = image.ome_attributes.multiscales[0]
    assert [(a.name, a.type, a.unit) for a in multiscale.axes] == [
        ("c", "channel", None),
        ("z", "space", "micrometer"),
        ("y", "space", "micrometer"),
        ("x", "space", "micrometer"),
    ]
    scale, translation = multiscale.datasets[0].coordinateTransformations
    assert scale.scale == pytest.approx([1.0, 0.04, 0.008, 0.008])
    assert translation.translation == pytest.approx([0.0, 0.0, 0.002, 0.002])


def test_a_volume_chunked_16_64_64_equals_the_in_memory_result(tmp_path, client):
    """Chunks (16, 64, 64) and 3-D blocks that straddle them: the same as one in-memory run."""
    rng = np.random.default_rng(9)
    data = rng.standard_normal((1, 40, 150, 130)).astype(np.float32)
    source = write_input(
        tmp_path / "in.zarr", data, (1, 16, 64, 64), dimension_names=["c", "z", "y", "x"]
    )
    layers = [
        ConvLayer.create(
            rng.standard_normal((4, 1, 5, 3, 3)).astype(np.float32),
            padding="same",
            padding_mode="circular",
            dilation=(2, 1, 1),
        ),
        PoolLayer.create("avg", 3, stride=2, padding=1, count_include_pad=False, ndim=3),
    ]
    output = str(tmp_path / "out.zarr")
    run_layers(layers, input=source, output=output, client=client, out_chunks=(7, 30, 25))
    result = zarr.open_group(output, mode="r")[FEATURES][...]
    np.testing.assert_allclose(result, apply_stack(layers, data), rtol=2e-5, atol=2e-5)


def test_resume_and_verify_work_block_by_block_in_3d(tmp_path, client):
    """Two 3-D blocks lost (objects deleted, markers cleared, as a killed job leaves them):
    verify counts 6 of 8 done, --resume recomputes those two only, and the result is the
    uninterrupted one."""
    from support.stores import unmark

    from featuremap.jobs.verify import verify_store

    rng = np.random.default_rng(12)
    data = rng.random((1, 20, 24, 24), dtype=np.float32)
    source = write_input(
        tmp_path / "in.zarr", data, (1, 10, 12, 12), dimension_names=["c", "z", "y", "x"]
    )
    layers = [ConvLayer.create(rng.standard_normal((2, 1, 3, 3, 3)), padding="same")]
    output = tmp_path / "out.zarr"
    run_layers(layers, input=source, output=str(output), client=client, out_chunks=(10, 12, 12))
    lost = [(0, 1, 0), (1, 0, 1)]
    for block in lost:
        (output / FEATURES / "c" / "0" / "/".join(map(str, block))).unlink()
    unmark(output, lost)
    assert verify_store(output).blocks_done == 6
    summary = run_layers(layers, input=source, output=str(output), client=client, resume=True)
    assert (summary.blocks_computed, summary.blocks_skipped) == (2, 6)
    result = zarr.open_group(str(output), mode="r")[FEATURES][...]
    np.testing.assert_allclose(result, apply_stack(layers, data), rtol=2e-5, atol=2e-5)
    assert verify_store(output).clean
