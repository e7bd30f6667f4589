"""OME-NGFF metadata of the output (``featuremap.io.ome``): valid for ome-zarr-models, placed in
physical space, and left out where the dims cannot be expressed in NGFF. (Reading an input's
multiscales: ``test_datasets.py``.)"""

from __future__ import annotations

import zarr
from support.stores import small_layout

from featuremap.engine.layers import PoolLayer
from featuremap.io import create_output


def test_ome_ngff_metadata_validates(finished):
    from ome_zarr_models.v05.image import Image

    output, *_ = finished
    image = Image.from_zarr(zarr.open_group(output, mode="r"))
    multiscale = image.attributes.ome.multiscales[0]
    assert [axis.type for axis in multiscale.axes] == ["time", "channel", "space", "space"]
    scale, translation = multiscale.datasets[0].coordinateTransformations
    assert scale.scale == [1.0, 1.0, 4.0, 4.0]
    assert translation.translation == [0.0, 0.0, 1.0, 0.5]


def test_ome_left_out_when_dims_cannot_be_expressed(tmp_path):
    layer = PoolLayer.create("max", 2)
    store = create_output(
        str(tmp_path / "two.zarr"),
        layout=small_layout((2, 3)),
        geometry_attrs={"layers": [layer.to_dict()]},
        weights=[],
        root_attrs={},
        job_attrs={},
    )
    assert "ome" not in store.group.attrs
    store = create_output(
        str(tmp_path / "none.zarr"),
        layout=small_layout(()),
        geometry_attrs={"layers": [layer.to_dict()]},
        weights=[],
        root_attrs={},
        job_attrs={},
    )
    assert [axis["type"] for axis in store.group.attrs["ome"]["multiscales"][0]["axes"]] == [
        "channel",
        "space",
        "space",
    ]
