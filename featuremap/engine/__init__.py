"""The engine: geometry, layer kinds, stacks, block planning and the per-block compute.

Pure NumPy/CuPy and integer arithmetic: nothing here imports Dask, distributed or Zarr.
"""
