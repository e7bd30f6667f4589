"""Reading an output store back: :func:`open_features` is ``featuremap.open``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from featuremap.engine.geometry import StackGeometry
from featuremap.errors import InputError, describe
from featuremap.io._paths import local_path
from featuremap.io.input import dimension_names
from featuremap.io.layout import FEATURES, ROOT_KEY, feature_axis_of
from featuremap.io.output import (
    Mode,
    OutputStore,
    array_at,
    attrs_dict,
    damaged_root,
    made_by_featuremap,
)
from featuremap.io.records import check_records

__all__ = ["FeatureStore", "open_features", "open_output"]


@dataclass(frozen=True)
class FeatureStore:
    """An output store opened for reading (``featuremap.open``)."""

    path: str
    group: zarr.Group

    @property
    def array(self) -> zarr.Array[Any]:
        return array_at(self.group, FEATURES)

    @property
    def data(self) -> Any:
        """The features as a Dask array ``(*batch, c, y, x)``, one task per stored chunk."""
        import dask.array as da

        return da.from_zarr(self.array)

    @property
    def dims(self) -> tuple[str, ...]:
        return dimension_names(self.array) or ()

    @property
    def feature_axis(self) -> int:
        """Where the features are in :attr:`data` (``c``; ``feature`` in a 0.1 store)."""
        return feature_axis_of(self.dims, self.array.ndim, len(self.geometry.jump))

    @property
    def feature_labels(self) -> tuple[str, ...]:
        """The features' labels, from their coordinate (their indices where it is missing)."""
        count = self.array.shape[self.feature_axis]
        name = self.dims[self.feature_axis] if self.dims else None
        coordinate = self.group.get(name) if name else None
        if isinstance(coordinate, zarr.Array) and coordinate.shape == (count,):
            return tuple(str(label) for label in np.asarray(coordinate[...]))
        return tuple(str(index) for index in range(count))

    @property
    def attrs(self) -> dict[str, Any]:
        """The root ``featuremap`` attributes: status, pipeline, fingerprint, input, versions."""
        return attrs_dict(self.group.attrs.get(ROOT_KEY))

    @property
    def geometry_attrs(self) -> dict[str, Any]:
        return attrs_dict(self.array.attrs.get(ROOT_KEY))

    @property
    def geometry(self) -> StackGeometry:
        """Receptive field, jump and offset of the whole stack."""
        return StackGeometry.from_dict(self.geometry_attrs)

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.geometry_attrs["layers"])

    def coords(self) -> dict[str, np.ndarray]:
        """The stored coordinate values of every axis that has some (as stored: a time axis is
        still CF-encoded here; :meth:`to_xarray` decodes it)."""
        return {
            name: np.asarray(array_at(self.group, name)[...])
            for name in self.dims
            if isinstance(self.group.get(name), zarr.Array)
        }

    def weights(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(weight, bias)`` of layer ``index`` (0-based); bias is ``None`` when it has none."""
        layers = self.layers
        if not (0 <= index < len(layers)) or layers[index].get("type") != "conv":
            conv = [i for i, layer in enumerate(layers) if layer.get("type") == "conv"]
            raise InputError(f"layer {describe(index)} has no weights; conv layers are {conv}")
        weight = np.asarray(array_at(self.group, f"layers/{index}/weight")[...])
        if not layers[index].get("bias"):
            return weight, None
        return weight, np.asarray(array_at(self.group, f"layers/{index}/bias")[...])

    def to_xarray(self) -> Any:
        """A labelled, lazy ``xarray.DataArray``: ``y``/``x`` in physical units, feature labels,
        the batch axes' decoded coordinates (time stamps), the CRS coordinate, and the geometry
        and provenance attributes -- as ``xarray.open_zarr(store)["features"]`` gives it."""
        import xarray as xr

        dataset = xr.open_dataset(self.path, engine="zarr", consolidated=False, chunks={})
        features = dataset[FEATURES]
        others = {key: value for key, value in features.attrs.items() if key != ROOT_KEY}
        features.attrs = {**others, **self.geometry_attrs, ROOT_KEY: self.attrs}
        return features


def open_output(store: str | os.PathLike[str], mode: Mode = "r") -> OutputStore:
    """Open a featuremap output store.

    Raises
    ------
    InputError
        ``store`` does not exist or is not a featuremap output store.
    BrokenStoreError
        featuremap made ``store`` but its root document, root record or ``features`` metadata
        cannot be read (the message names the file and the fix).
    """
    path = os.fspath(store)
    local = local_path(path)
    if local is not None and not local.exists():
        raise InputError(f"feature store {path!r} does not exist; check the path")
    try:
        output = OutputStore.open(path, mode)
    except Exception as error:  # noqa: BLE001 -- missing, or a torn root zarr.json
        if made_by_featuremap(path):
            raise damaged_root(path, error) from None
        raise InputError(f"{path!r} is not a Zarr group written by featuremap") from None
    if not output.is_featuremap:
        if made_by_featuremap(path):
            output.root  # noqa: B018 -- raises BrokenStoreError naming the damaged record
        raise InputError(
            f"{path!r} is not a featuremap output store (no '{FEATURES}' array or "
            f"'{ROOT_KEY}' attributes)"
        )
    output.features  # noqa: B018 -- BrokenStoreError if its metadata cannot be read
    check_records(output)  # before anything acts on them: a grid, a pid, the geometry
    return output


def open_features(store: str | os.PathLike[str]) -> FeatureStore:
    """Open an output store for reading (``featuremap.open``); :class:`InputError` if it is not one."""
    output = open_output(store)
    return FeatureStore(output.path, output.group)
