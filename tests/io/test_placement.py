"""Where the output's pixels are (``featuremap.io.placement``): the coordinates of a store written
by a real job (the ``finished`` fixture, ``conftest.py``) are the geometry's centres."""

from __future__ import annotations

import numpy as np
import zarr

from featuremap.engine.geometry import StackGeometry, output_centres
from featuremap.engine.stack import resolve_stack


def test_coordinates_are_geometry_centres(finished):
    output, layers, data, _ = finished
    _stack = resolve_stack(layers, data.shape[-2:], data.shape[-3])
    _, stacks, shapes = _stack.geometries, _stack.stacks, _stack.shapes
    centres_y, centres_x = output_centres(stacks[-1], shapes[-1][1:])
    group = zarr.open_group(output, mode="r")
    np.testing.assert_array_equal(group["y"][...], centres_y)
    np.testing.assert_array_equal(group["x"][...], centres_x)
    # by hand, DESIGN section 2: conv k(4, 3) "same" (lo 1, 1): rf (4, 3), start (0.5, 0);
    # avg pool 2: rf (5, 4), start (1, 0.5), jump 2; conv k3 s2 p1: rf (9, 8), start (1, 0.5), jump 4
    assert stacks[-1] == StackGeometry(receptive_field=(9, 8), jump=(4, 4), offset=(1.0, 0.5))


# --- units from the CRS when the coordinates say none ------------------------------------------


def _mapping(epsg: int):
    pyproj = __import__("pytest").importorskip("pyproj")
    from featuremap.io.placement import GridMapping

    wkt = pyproj.CRS.from_epsg(epsg).to_wkt()
    return GridMapping("spatial_ref", {"crs_wkt": wkt, "spatial_ref": wkt})


def test_a_projected_crs_gives_metres_to_unitless_coordinates():
    from featuremap.io.placement import Placement, Spacing

    placement = Placement(
        y=Spacing(-5.0, 4_999_975.0), x=Spacing(5.0, 500_002.5), grid_mapping=_mapping(32633)
    ).with_crs_units()
    assert (placement.y.unit, placement.x.unit) == ("metre", "metre")
    assert placement.y.attrs["standard_name"] == "projection_y_coordinate"
    assert placement.x.attrs["units"] == "metre"
    assert placement.physical_spacing == (5.0, 5.0)


def test_a_geographic_crs_gives_degrees_and_own_units_win():
    from featuremap.io.placement import Placement, Spacing, ngff_unit

    placement = Placement(
        y=Spacing(-0.5, 60.0),
        x=Spacing(0.5, 5.0, "degree_east", {"long_name": "lon"}),
        grid_mapping=_mapping(4326),
    ).with_crs_units()
    assert placement.y.unit == "degrees_north"
    assert placement.y.attrs["standard_name"] == "latitude"
    assert placement.x.unit == "degree_east"  # the coordinate's own unit is kept
    assert placement.x.attrs == {"long_name": "lon"}
    assert ngff_unit(placement.y.unit) is None  # NGFF has no angle unit: none rather than wrong


def test_pixel_indices_stay_pixels_under_a_crs():
    from featuremap.io.placement import Placement, Spacing

    placement = Placement(y=Spacing(), x=Spacing(), grid_mapping=_mapping(32633))
    assert placement.with_crs_units() == placement  # no coordinate: values are pixel indices
