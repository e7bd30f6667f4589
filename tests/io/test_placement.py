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
