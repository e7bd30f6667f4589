"""featuremap: banks of conv/pool filters over chunked Zarr images, with exact geometry.

The public surface is small (DESIGN section 3):

* :func:`conv2d` / :func:`conv3d`, :func:`max_pool2d` / :func:`max_pool3d`, :func:`avg_pool2d` /
  :func:`avg_pool3d` on NumPy, CuPy or Dask arrays; :func:`pixel_features` (ilastik's set);
* :func:`load_pipeline`, :func:`run` and :func:`open` for pipeline jobs and their output stores;
* :func:`apply` for an xarray DataArray: lazy, with composed coordinates and CRS;
* :mod:`featuremap.banks`, the filter-bank library.

Heavy modules (Dask's distributed, Zarr) load on first use, so ``import featuremap`` stays cheap
and a spawned worker re-imports nothing it does not need.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from featuremap._version import __version__
from featuremap.errors import FeaturemapError, InputError, JobError

if TYPE_CHECKING:  # loaded on first use: the command line's --help, status, jobs need no NumPy
    from featuremap.arrays.functional import (
        avg_pool2d,
        avg_pool3d,
        conv2d,
        conv3d,
        max_pool2d,
        max_pool3d,
        pixel_feature_labels,
        pixel_features,
    )

__all__ = [
    "FeaturemapError",
    "InputError",
    "JobError",
    "__version__",
    "apply",
    "avg_pool2d",
    "avg_pool3d",
    "banks",
    "conv2d",
    "conv3d",
    "load_pipeline",
    "max_pool2d",
    "max_pool3d",
    "open",
    "pixel_feature_labels",
    "pixel_features",
    "run",
]

_FUNCTIONAL = (
    "avg_pool2d",
    "avg_pool3d",
    "conv2d",
    "conv3d",
    "max_pool2d",
    "max_pool3d",
    "pixel_feature_labels",
    "pixel_features",
)
_LAZY = {
    **{name: ("featuremap.arrays.functional", name) for name in _FUNCTIONAL},
    "load_pipeline": ("featuremap.pipeline.pipeline", "load_pipeline"),
    "run": ("featuremap.jobs.run", "run"),
    "open": ("featuremap.io.reader", "open_features"),
    "apply": ("featuremap.arrays.xarray", "apply"),
    "banks": ("featuremap.banks", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'featuremap' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
