"""``featuremap export``: a finished store's features as a GeoTIFF or a Cloud-Optimized GeoTIFF.

One 2-D plane of features becomes one multi-band raster that GIS tools open as it is: one band
per feature, each band *described* by its feature label (``gabor θ=45° f=0.2 σ=2.81 even``, what
QGIS and ``gdalinfo`` show as the band name); georeferenced by the store's CRS (its CF grid
mapping's WKT) and the affine transform of its ``y`` / ``x`` coordinates (pixel centres, so the
raster's edges lie half a pixel out); and ``featuremap``'s provenance as one compact JSON
metadata tag -- never a ``repr`` of the attributes.

Stores with batch axes (``time``, ``n``, ...) or a 3-D stack's ``z`` hold several planes: one is
chosen per axis with ``index`` (``{"time": 0}``). The plane is read and written one stored
chunk row at a time, so memory stays at a row of chunks; float16 features are written as
float32 (GeoTIFF has no float16 that GDAL 3.10 writes), NaN (not computed) as nodata.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from featuremap.errors import InputError, describe, error_line

__all__ = [
    "EXPORT_FORMATS",
    "ExportFormat",
    "ExportTarget",
    "default_target",
    "export_store",
    "parse_index",
    "plane_dims",
    "provenance_tag",
]

#: ``--to`` values: plain tiled GeoTIFF, or a Cloud-Optimized GeoTIFF (overviews, COG layout).
EXPORT_FORMATS = ("geotiff", "cog")
ExportFormat = Literal["geotiff", "cog"]

#: Root provenance keys carried into the tag (the rest stays in the store).
_PROVENANCE = ("fingerprint", "versions", "finished")
#: Geometry keys carried into the tag.
_GEOMETRY = ("receptive_field", "jump", "offset", "physical")


@dataclass(frozen=True)
class ExportTarget:
    """Where and how to export: the output file, its format, and the plane (``index``)."""

    path: Path
    format: ExportFormat = "geotiff"
    index: Mapping[str, int] = field(default_factory=dict)


def parse_index(text: str | None) -> dict[str, int]:
    """``time=0,n=2`` -> ``{"time": 0, "n": 2}``; ``None`` -> ``{}``.

    Raises
    ------
    InputError
        An item that is not ``NAME=INDEX`` with a whole number ``INDEX >= 0``.
    """
    index: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        if not name.strip() or not value.strip().isdigit():
            raise InputError(
                f"--index {item.strip()!r} is not NAME=INDEX; give e.g. --index time=0,n=2"
            )
        index[name.strip()] = int(value)
    return index


def plane_dims(dims: tuple[str, ...], ndim: int) -> tuple[str, str, str]:
    """The feature, row and column dimensions of a rank-``ndim`` stack's ``features``: found by
    place, not name (the feature axis before the spatial ones, ``y`` and ``x`` last)."""
    return dims[-ndim - 1], dims[-2], dims[-1]


def _plane_selection(
    dims: tuple[str, ...], shape: tuple[int, ...], plane: Sequence[str], index: Mapping[str, int]
) -> tuple[Any, ...]:
    """The index tuple that cuts the ``plane`` (feature, y, x) out of ``features``."""
    unknown = [name for name in index if name not in dims or name in plane]
    if unknown:
        choices = [d for d in dims if d not in plane]
        raise InputError(
            f"--index names {', '.join(map(repr, unknown))}, which the store's features "
            f"{dims} do not have as a batch axis (choose among {choices or 'none'})"
        )
    selection: list[Any] = []
    for dim, size in zip(dims, shape, strict=True):
        if dim in plane:
            selection.append(slice(None))
        elif dim in index:
            if index[dim] >= size:
                raise InputError(
                    f"--index {dim}={index[dim]} is outside the store's {dim} axis (0..{size - 1})"
                )
            selection.append(index[dim])
        elif size == 1:
            selection.append(0)
        else:
            raise InputError(
                f"the store's features {dims} hold {size} planes along {dim!r}; a GeoTIFF holds "
                f"one: choose it with --index {dim}=0 (0..{size - 1})"
            )
    return tuple(selection)


def _transform(y: np.ndarray, x: np.ndarray) -> Any:
    """GDAL's affine transform of a grid of pixel centres ``y`` (rows) and ``x`` (columns)."""
    from rasterio.transform import Affine

    dy = float(y[1] - y[0]) if y.size > 1 else 1.0
    dx = float(x[1] - x[0]) if x.size > 1 else 1.0
    return Affine(dx, 0.0, float(x[0]) - dx / 2, 0.0, dy, float(y[0]) - dy / 2)


def _crs_wkt(store: Any) -> str | None:
    """The WKT of the store's CF grid mapping (``features.attrs['grid_mapping']``), if any."""
    name = store.array.attrs.get("grid_mapping")
    if not isinstance(name, str) or name not in store.group:
        return None
    attrs = dict(store.group[name].attrs)
    wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
    return wkt if isinstance(wkt, str) and wkt else None


def provenance_tag(store: Any, index: Mapping[str, int]) -> str:
    """The ``featuremap`` metadata tag: one compact JSON object (pipeline name, fingerprint,
    versions, the stack's geometry, the plane exported), a few hundred bytes."""
    root, geometry = store.attrs, store.geometry_attrs
    pipeline = root.get("pipeline") or {}
    tag = {
        "store": store.path,
        "pipeline": pipeline.get("name"),
        **{key: root[key] for key in _PROVENANCE if key in root},
        **{key: geometry[key] for key in _GEOMETRY if key in geometry},
        "index": dict(index),
    }
    return json.dumps(tag, separators=(",", ":"), ensure_ascii=False, default=str)


def _rows(features: Any, selection: tuple[Any, ...], step: int) -> Iterator[tuple[int, Any]]:
    """``(first row, (feature, rows, x) values)`` of the plane, one stored chunk row at a time."""
    height = features.shape[-2]
    for start in range(0, height, step):
        stop = min(start + step, height)
        rows = np.asarray(features[(*selection[:-2], slice(start, stop), slice(None))])
        yield start, rows.astype(np.float32, copy=False)


def _profile(plane: tuple[int, ...], transform: Any, wkt: str | None) -> dict[str, Any]:
    """rasterio's creation options: float32 bands, tiled, deflate with the float predictor."""
    count, height, width = plane
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "count": count,
        "height": height,
        "width": width,
        "dtype": "float32",
        "nodata": float("nan"),
        "transform": transform,
        "compress": "deflate",
        "predictor": 3,  # floating-point predictor: feature maps are smooth
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "BIGTIFF": "IF_SAFER",
    }
    if wkt is not None:
        profile["crs"] = wkt
    return profile


def _write_geotiff(store: Any, target: ExportTarget, path: Path) -> None:
    import rasterio

    features = store.array
    names = plane_dims(store.dims, len(store.geometry.jump))
    selection = _plane_selection(store.dims, features.shape, names, target.index)
    plane = tuple(features.shape[i] for i in range(features.ndim) if selection[i] == slice(None))
    coords = store.coords()
    labels = [str(label) for label in coords[names[0]]]
    step = max(features.chunks[-2], 256)
    profile = _profile(plane, _transform(coords[names[1]], coords[names[2]]), _crs_wkt(store))
    with rasterio.open(path, "w", **profile) as raster:
        for band, label in enumerate(labels, start=1):
            raster.set_band_description(band, label)
        raster.update_tags(featuremap=provenance_tag(store, target.index))
        for start, rows in _rows(features, selection, step):
            window = rasterio.windows.Window(0, start, plane[2], rows.shape[1])
            raster.write(rows, window=window)


def export_store(store: Any, target: ExportTarget) -> Path:
    """Write ``store``'s features (a :class:`~featuremap.io.FeatureStore`) to ``target``.

    The file is written beside its destination and renamed into place, so a failure leaves
    no partial raster; an existing destination is refused (featuremap never overwrites a file
    it did not make).

    Raises
    ------
    InputError
        The destination exists or its folder does not; ``index`` does not pick one plane;
        rasterio (the ``geo`` extra) is not installed; the store is not finished.
    """
    try:
        import rasterio.shutil
    except ImportError:
        raise InputError(
            "export needs rasterio; install featuremap's geo extra: pip install 'featuremap[geo]'"
        ) from None
    status = store.attrs.get("status")
    if status != "complete":
        raise InputError(
            f"store {store.path!r} is {describe(status)}, not complete; finish it with "
            "featuremap run --resume before exporting"
        )
    destination = target.path
    if destination.exists():
        raise InputError(f"{str(destination)!r} exists; remove it or give another -o")
    if not destination.parent.is_dir():
        raise InputError(f"folder {str(destination.parent)!r} does not exist; create it first")
    partial = Path(
        tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent)
    )  # beside the destination: the final rename stays on one file system
    try:
        plain = partial / "plain.tif"
        _write_geotiff(store, target, plain)
        if target.format == "cog":
            cog = partial / "cog.tif"
            rasterio.shutil.copy(plain, cog, driver="COG", compress="deflate", predictor=3)
            plain = cog
        os.replace(plain, destination)
    except (rasterio.errors.RasterioError, OSError) as error:
        raise InputError(f"could not write {str(destination)!r}: {error_line(error)}") from None
    finally:
        for leftover in partial.iterdir():
            leftover.unlink()
        partial.rmdir()
    return destination


def default_target(store: str, fmt: ExportFormat) -> Path:
    """``out/gabor.zarr`` -> ``out/gabor.tif`` (``out/gabor.cog.tif`` for a COG)."""
    path = Path(store.rstrip("/"))
    return path.with_name(path.stem + (".cog.tif" if fmt == "cog" else ".tif"))
