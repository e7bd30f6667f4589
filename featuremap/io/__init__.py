"""Storage: the only package that imports Zarr.

Inputs are opened and described here (:func:`open_input`), output stores laid out, created and
read back (:func:`create_output`, :class:`OutputStore`, :func:`open_features`), blocks written by
workers (:func:`write_block`) and chunks listed and decoded for ``verify`` (:mod:`.chunks`).

This package never imports the job, pipeline or CLI layers: the job layer passes in whatever a
store must record (attributes, weights, layout), and decides what the records mean.
"""

from __future__ import annotations

from featuremap.io._display import FeatureStats
from featuremap.io._paths import (
    access_error,
    check_url,
    dangling_link,
    is_url,
    local_path,
    nearest_existing,
    normalize_store,
    sweep_partial_files,
)
from featuremap.io.create import LayerArrays, create_output
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
    OutputStore,
    consolidate,
    damaged_root,
    damaged_store,
    made_by_featuremap,
    read_job_token,
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
    "FeatureStats",
    "FeatureStore",
    "InputArray",
    "InputSelection",
    "LayerArrays",
    "OutputLayout",
    "OutputStore",
    "access_error",
    "check_url",
    "consolidate",
    "create_output",
    "damaged_root",
    "damaged_store",
    "dangling_link",
    "feature_codecs",
    "is_url",
    "local_path",
    "made_by_featuremap",
    "nearest_existing",
    "normalize_store",
    "open_features",
    "open_input",
    "open_output",
    "read_job_token",
    "storage_versions",
    "sweep_partial_files",
    "write_block",
]


def storage_versions() -> dict[str, str]:
    """Versions of the storage libraries, for a store's provenance."""
    import zarr

    return {"zarr": zarr.__version__}
