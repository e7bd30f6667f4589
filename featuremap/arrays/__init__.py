"""Front-ends on arrays: the functional API (``conv2d``, pools), the lazy Dask graph, and
``apply`` on xarray DataArrays."""
