"""Storage: the only package that imports Zarr.

Inputs are opened and described here (:func:`open_input`), output stores laid out, created and
read back (:func:`create_output`, :class:`OutputStore`, :func:`open_features`), blocks written by
workers (:func:`write_block`) and chunks listed and decoded for ``verify`` (:mod:`.chunks`).

This package never imports the job, pipeline or CLI layers: the job layer passes in whatever a
store must record (attributes, weights, layout), and decides what the records mean.
"""

from __future__ import annotations

from featuremap.io._paths import (
    is_url,
    local_path,
    nearest_existing,
    sweep_partial_files,
)
from featuremap.io.input import InputArray, InputSelection, open_input
from featuremap.io.layout import (
    FEATURE_DIMS,
    FEATURES,
    JOB_GROUP,
    MARKERS,
    ROOT_KEY,
    OutputLayout,
    feature_codecs,
)
from featuremap.io.output import (
    Block,
    LayerArrays,
    OutputStore,
    consolidate,
    create_output,
)
from featuremap.io.reader import FeatureStore, open_features, open_output
from featuremap.io.sink import write_block

__all__ = [
    "FEATURES",
    "FEATURE_DIMS",
    "JOB_GROUP",
    "MARKERS",
    "ROOT_KEY",
    "Block",
    "FeatureStore",
    "InputArray",
    "InputSelection",
    "LayerArrays",
    "OutputLayout",
    "OutputStore",
    "consolidate",
    "create_output",
    "feature_codecs",
    "is_url",
    "local_path",
    "nearest_existing",
    "open_features",
    "open_input",
    "open_output",
    "storage_versions",
    "sweep_partial_files",
    "write_block",
]


def storage_versions() -> dict[str, str]:
    """Versions of the storage libraries, for a store's provenance."""
    import zarr

    return {"zarr": zarr.__version__}
